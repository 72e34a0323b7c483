//! Progress of the granules being run. On a terminal, one live bar per granule in flight, in
//! granule order, redrawn in place (segments, lines, workers busy, elapsed); anywhere else (a
//! Slurm output file, a pipe) plain lines naming their granule, at most one a second per
//! granule and only when it moved, with no control characters.
//!
//! This module only formats; what it shows comes from the fan-out, and the command says
//! where the text goes and whether that is a terminal ([`ProgressOut`]). Every
//! [`Progress`] of a step shares one board of the bars on screen, so whichever writes next (a
//! `say`, or the drop of the one a run owned) ends the bars first and the terminal is left
//! clean; the next tick draws those still in flight again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::domain::fanout::machine::Fanout;

/// Plain lines: at most one this often.
const PLAIN_EVERY: Duration = Duration::from_secs(1);
/// The live bar: redrawn at most this often.
const LIVE_EVERY: Duration = Duration::from_millis(100);
/// Columns of the bar itself.
const BAR: usize = 24;
/// The longest granule name shown on the live line; longer ones are cut in the middle.
const NAME: usize = 36;
/// Back to the start of the line and clear it.
const CLEAR: &str = "\r\x1b[2K";

/// The live bars of the granules in flight, shared by every [`Progress`] of a step.
#[derive(Debug, Default)]
struct Board {
    /// Each granule's latest bar, by its number, in order.
    bars: Vec<(usize, String)>,
    /// Lines of bars on screen now; the cursor is at the end of the last.
    shown: usize,
}

impl Board {
    fn set(&mut self, index: usize, line: String) {
        match self.bars.binary_search_by_key(&index, |(i, _)| *i) {
            Ok(at) => self.bars[at].1 = line,
            Err(at) => self.bars.insert(at, (index, line)),
        }
    }

    fn remove(&mut self, index: usize) {
        self.bars.retain(|(i, _)| *i != index);
    }

    /// The text that draws every bar over those on screen.
    fn redraw(&mut self) -> String {
        let lines: Vec<&str> = self.bars.iter().map(|(_, l)| l.as_str()).collect();
        let text = redraw(self.shown, &lines);
        self.shown = lines.len();
        text
    }

    /// The text that takes the bars off the screen, leaving the cursor where they began.
    fn clear(&mut self) -> String {
        clear(std::mem::take(&mut self.shown)).to_string()
    }
}

/// One board for the step's progress, whichever granule writes.
fn shared_board() -> Arc<Mutex<Board>> {
    static BOARD: std::sync::OnceLock<Arc<Mutex<Board>>> = std::sync::OnceLock::new();
    BOARD.get_or_init(Arc::default).clone()
}

/// Draws `lines` over the `shown` lines of bars on screen (the cursor at the end of the
/// last): up to the first, each line cleared and written, anything left below cleared.
pub fn redraw(shown: usize, lines: &[&str]) -> String {
    let mut out = String::from("\r");
    if shown > 1 {
        out.push_str(&format!("\x1b[{}A", shown - 1));
    }
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str("\x1b[2K");
        out.push_str(line);
    }
    if lines.len() < shown {
        out.push_str("\x1b[J");
    }
    out
}

/// Takes `shown` lines of bars off the screen: the cursor back where the first began.
pub fn clear(shown: usize) -> std::borrow::Cow<'static, str> {
    match shown {
        0 => "".into(),
        1 => CLEAR.into(),
        n => format!("\r\x1b[{}A\x1b[J", n - 1).into(),
    }
}

/// Where progress goes, as the command chose it: a writer of text as it is (a live bar's
/// control sequences included) and whether it is a terminal that shows live bars.
#[derive(Debug, Clone, Copy)]
pub struct ProgressOut {
    pub live: bool,
    pub write: fn(&str),
}

/// Where progress goes.
#[derive(Clone)]
enum Sink {
    Out(fn(&str)),
    #[cfg(test)]
    Buffer(Arc<Mutex<Vec<u8>>>),
}

impl Sink {
    fn write(&self, text: &str) {
        match self {
            Sink::Out(write) => write(text),
            #[cfg(test)]
            Sink::Buffer(b) => b.lock().unwrap().extend_from_slice(text.as_bytes()),
        }
    }
}

/// Where a granule stands, as the bar and the plain lines show it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    pub segments_written: u32,
    /// `None` until clavrxorb has said how many lines the granule has (and in serial runs).
    pub segments: Option<i64>,
    pub lines_written: i64,
    pub lines: Option<i64>,
    pub busy: usize,
    pub elapsed: Duration,
}

impl Snapshot {
    fn of(f: &Fanout, scan_lines: u32, elapsed: Duration) -> Snapshot {
        let per = i64::from(scan_lines.max(1));
        let total = f.total_lines();
        Snapshot {
            segments_written: f.segments_written(),
            segments: total.map(|t| ((t + per - 1) / per).max(1)),
            lines_written: f.written_lines(),
            lines: total,
            busy: f.busy_workers(),
            elapsed,
        }
    }
}

#[derive(Clone)]
pub struct Progress {
    label: String,
    name: String,
    index: usize,
    count: usize,
    scan_lines: u32,
    started: Instant,
    live: bool,
    /// Columns of the terminal.
    width: usize,
    sink: Sink,
    /// The bars on screen now (shared by every granule's).
    board: Arc<Mutex<Board>>,
    last_print: Option<Instant>,
    last_shown: (u32, i64),
}

impl Progress {
    /// Progress of granule `index` (0-based) of `count`, written to `out`: live bars when it
    /// is a terminal, plain lines otherwise.
    pub fn new(
        out: ProgressOut,
        index: usize,
        count: usize,
        name: &str,
        scan_lines: u32,
    ) -> Progress {
        Progress::with_sink(
            index,
            count,
            name,
            scan_lines,
            out.live,
            Sink::Out(out.write),
            shared_board(),
        )
    }

    fn with_sink(
        index: usize,
        count: usize,
        name: &str,
        scan_lines: u32,
        live: bool,
        sink: Sink,
        board: Arc<Mutex<Board>>,
    ) -> Progress {
        let name = crate::base::escape::controls(name);
        Progress {
            label: format!("[{}/{count}] {name}", index + 1),
            name: name.into_owned(),
            index,
            count,
            scan_lines,
            started: Instant::now(),
            live,
            width: columns(),
            sink,
            board,
            last_print: None,
            last_shown: (0, -1),
        }
    }

    /// One line about the granule (taking the live bars off the screen first).
    pub fn say(&self, what: &str) {
        let mut board = self.board.lock().unwrap_or_else(|p| p.into_inner());
        let clear = board.clear();
        let what = crate::base::escape::controls(what);
        self.sink.write(&format!("{clear}{}: {what}\n", self.label));
    }

    /// Shows where the granule stands: on a terminal the bar, redrawn at most ten times a
    /// second; elsewhere a plain line at most once a second and only when it moved.
    pub fn tick(&mut self, f: &Fanout) {
        let now = Snapshot::of(f, self.scan_lines, self.started.elapsed());
        if self.live {
            if self.last_print.is_some_and(|t| t.elapsed() < LIVE_EVERY) {
                return;
            }
            let mut board = self.board.lock().unwrap_or_else(|p| p.into_inner());
            let line = live_line(self.index, self.count, &self.name, &now, self.width);
            board.set(self.index, line);
            self.sink.write(&board.redraw());
        } else {
            let moved = (now.segments_written, now.lines_written) != self.last_shown;
            let due = self.last_print.is_none_or(|t| t.elapsed() >= PLAIN_EVERY);
            let Some(line) = plain_line(&now) else {
                return;
            };
            if !moved || !due {
                return;
            }
            self.say(&line);
            self.last_shown = (now.segments_written, now.lines_written);
        }
        self.last_print = Some(Instant::now());
    }
}

impl Drop for Progress {
    /// Takes the bars off the screen, so nothing else is written onto their lines, and this
    /// granule's out of the board (the others' come back at their next tick).
    fn drop(&mut self) {
        let mut board = self.board.lock().unwrap_or_else(|p| p.into_inner());
        board.remove(self.index);
        let clear = board.clear();
        if !clear.is_empty() {
            self.sink.write(&clear);
        }
    }
}

/// The plain line: `14/28 segments, 2800/5600 lines, 2 workers busy` (none before the
/// granule's size is known).
pub fn plain_line(s: &Snapshot) -> Option<String> {
    Some(format!(
        "{}/{} segments, {}/{} lines, {} workers busy",
        s.segments_written, s.segments?, s.lines_written, s.lines?, s.busy
    ))
}

/// The live line, without control characters, at most `width - 1` columns (a line that
/// wraps cannot be redrawn in place):
/// `[2/5] NAME [=========>      ] 14/28 seg  2800/5600 lines  2 busy  12.3 s`. When it does
/// not fit, a long name is cut first, then the lines go, then the bar shrinks.
pub fn live_line(index: usize, count: usize, name: &str, s: &Snapshot, width: usize) -> String {
    let width = width.max(20) - 1;
    let counter = format!("[{}/{count}] ", index + 1);
    let elapsed = seconds(s.elapsed);
    let (Some(segments), Some(lines)) = (s.segments, s.lines) else {
        let tail = format!("  running  {} busy  {elapsed}", s.busy);
        let room = width.saturating_sub(counter.len() + tail.len()).max(8);
        return fit(
            format!("{counter}{}{tail}", shorten(name, room.min(NAME))),
            width,
        );
    };
    let segs = format!(" {}/{segments} seg", s.segments_written);
    let lines_part = format!("  {}/{lines} lines", s.lines_written);
    let tail = format!("  {} busy  {elapsed}", s.busy);
    let fixed = counter.len() + segs.len() + tail.len();
    // The name gives way (down to 12 characters) to a bar of at least 10.
    let name = shorten(name, width.saturating_sub(fixed + 13).clamp(12, NAME));
    let mut rest = width.saturating_sub(fixed + name.chars().count());
    let lines_part = if rest >= lines_part.len() + 13 {
        rest -= lines_part.len();
        lines_part
    } else {
        String::new()
    };
    // " [" + bar + "]"
    let bar = match rest.saturating_sub(3).min(BAR) {
        n if n >= 5 => format!(" [{}]", bar(s, n)),
        _ => String::new(),
    };
    fit(
        format!("{counter}{name}{bar}{segs}{lines_part}{tail}"),
        width,
    )
}

/// `n` columns, filled by the share of lines written.
fn bar(s: &Snapshot, n: usize) -> String {
    let lines = s.lines.unwrap_or(0);
    let fraction = if lines > 0 {
        (s.lines_written as f64 / lines as f64).clamp(0.0, 1.0)
    } else {
        0.0
    };
    match (fraction * n as f64).round() as usize {
        0 => " ".repeat(n),
        full if full >= n => "=".repeat(n),
        full => format!("{}>{}", "=".repeat(full - 1), " ".repeat(n - full)),
    }
}

/// `line` cut to `width` characters.
fn fit(line: String, width: usize) -> String {
    match line.char_indices().nth(width) {
        Some((cut, _)) => line[..cut].to_string(),
        None => line,
    }
}

/// The terminal's width: `COLUMNS` when the shell exports it, else 80.
fn columns() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|&c| c >= 20)
        .unwrap_or(80)
}

/// `name`, cut in the middle to at most `max` characters.
fn shorten(name: &str, max: usize) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= max {
        return name.to_string();
    }
    let keep = max - 3;
    let front: String = chars[..keep / 2].iter().collect();
    let back: String = chars[chars.len() - (keep - keep / 2)..].iter().collect();
    format!("{front}...{back}")
}

/// `12.3 s`, `4 min 05 s`, `1 h 02 min`.
fn seconds(d: Duration) -> String {
    crate::base::time::duration(d.as_secs_f64(), crate::base::time::Style::Clock)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(written: u32, lines_written: i64) -> Snapshot {
        Snapshot {
            segments_written: written,
            segments: Some(28),
            lines_written,
            lines: Some(5600),
            busy: 2,
            elapsed: Duration::from_millis(12_345),
        }
    }

    #[test]
    fn plain_lines_keep_their_format() {
        assert_eq!(
            plain_line(&snap(14, 2800)).unwrap(),
            "14/28 segments, 2800/5600 lines, 2 workers busy"
        );
        let unknown = Snapshot {
            segments: None,
            lines: None,
            ..snap(0, 0)
        };
        assert_eq!(plain_line(&unknown), None);
    }

    #[test]
    fn the_live_line_fills_with_the_lines_written_and_fits_the_terminal() {
        let half = live_line(1, 5, "g.gran", &snap(14, 2800), 120);
        assert_eq!(
            half,
            "[2/5] g.gran [===========>            ] 14/28 seg  2800/5600 lines  2 busy  12.3 s"
        );
        let done = live_line(1, 5, "g.gran", &snap(28, 5600), 120);
        assert!(done.contains(&format!("[{}]", "=".repeat(BAR))), "{done}");
        let none = live_line(1, 5, "g.gran", &snap(0, 0), 120);
        assert!(none.contains(&format!("[{}]", " ".repeat(BAR))), "{none}");
        let running = Snapshot {
            segments: None,
            lines: None,
            ..snap(0, 0)
        };
        let starting = live_line(0, 1, "g.gran", &running, 80);
        assert_eq!(starting, "[1/1] g.gran  running  2 busy  12.3 s");
        let long = "goes16.abi.2024.001.120000.very.long.granule.name.with.parts.nc";
        let mut lines = vec![half, done, none, starting];
        for width in [20, 40, 60, 80, 100, 200] {
            for s in [snap(14, 2800), running] {
                let line = live_line(99_998, 100_000, long, &s, width);
                assert!(line.chars().count() < width, "{width}: {line:?}");
                lines.push(line);
            }
        }
        // At 80 columns a long name still leaves room for the bar; at 60 the lines go.
        let at80 = live_line(99_998, 100_000, long, &snap(14, 2800), 80);
        assert!(at80.contains("=>") && at80.contains("14/28 seg"), "{at80}");
        for line in lines {
            assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
        }
    }

    #[test]
    fn long_names_are_cut_in_the_middle() {
        let name = "goes16.abi.2024.001.120000.very.long.granule.name.with.parts.nc";
        let short = shorten(name, NAME);
        assert_eq!(short.chars().count(), NAME);
        assert!(
            short.starts_with("goes16.abi") && short.ends_with("parts.nc"),
            "{short}"
        );
        assert!(short.contains("..."));
        assert_eq!(shorten("short", NAME), "short");
    }

    #[test]
    fn elapsed_reads_in_seconds_minutes_or_hours() {
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(seconds(Duration::from_secs(245)), "4 min 05 s");
        assert_eq!(seconds(Duration::from_secs(3720)), "1 h 02 min");
    }

    #[test]
    fn a_say_or_the_end_of_the_run_ends_the_bar_first() {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let progress = Progress::with_sink(
            0,
            2,
            "g.gran",
            10,
            true,
            Sink::Buffer(buffer.clone()),
            Arc::default(),
        );
        let mut run = progress.clone();
        let fanout = Fanout::new(
            1,
            crate::domain::fanout::machine::Limits {
                max_workers: 2,
                max_lead: 2,
            },
            true,
        );
        run.tick(&fanout);
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        assert!(
            text.starts_with(&format!("{CLEAR}[1/2] g.gran  running  0 busy  ")),
            "{text:?}"
        );
        assert!(!text.contains('\n'), "{text:?}");
        // Within a tenth of a second: no redraw.
        run.tick(&fanout);
        assert_eq!(buffer.lock().unwrap().len(), text.len());
        // The final line, from another clone, clears the bar's line first.
        progress.say("done in 1.0 s");
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        assert!(
            text.ends_with(&format!("{CLEAR}[1/2] g.gran: done in 1.0 s\n")),
            "{text:?}"
        );
        // Nothing on screen now: dropping writes nothing more, saying adds no clearing.
        drop(run);
        progress.say("again");
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with("s\n[1/2] g.gran: again\n"), "{text:?}");

        // A run that ends without a final line (interrupted) clears the bar when dropped.
        buffer.lock().unwrap().clear();
        let mut run = progress.clone();
        run.tick(&fanout);
        drop(run);
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with(CLEAR), "{text:?}");
    }

    #[test]
    fn bars_are_drawn_over_those_on_screen_and_cleared_from_the_first() {
        assert_eq!(redraw(0, &["a"]), format!("{CLEAR}a"));
        assert_eq!(redraw(1, &["a"]), format!("{CLEAR}a"));
        // Two on screen: up one line, both rewritten; the cursor ends after the second.
        assert_eq!(redraw(2, &["a", "b"]), "\r\x1b[1A\x1b[2Ka\n\x1b[2Kb");
        // A second granule's bar goes below the first.
        assert_eq!(redraw(1, &["a", "b"]), "\r\x1b[2Ka\n\x1b[2Kb");
        // One of three left: the lines below it are cleared.
        assert_eq!(redraw(3, &["b"]), "\r\x1b[2A\x1b[2Kb\x1b[J");
        assert_eq!(clear(0), "");
        assert_eq!(clear(1), CLEAR);
        assert_eq!(clear(3), "\r\x1b[2A\x1b[J");
    }

    #[test]
    fn each_granule_in_flight_has_its_own_bar_in_granule_order() {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let board: Arc<Mutex<Board>> = Arc::default();
        let text = || String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        let progress = |index, name| {
            Progress::with_sink(
                index,
                3,
                name,
                10,
                true,
                Sink::Buffer(buffer.clone()),
                board.clone(),
            )
        };
        let mut second = progress(1, "b.gran");
        let mut first = progress(0, "a.gran");
        let fanout = Fanout::new(
            1,
            crate::domain::fanout::machine::Limits {
                max_workers: 2,
                max_lead: 2,
            },
            true,
        );
        second.tick(&fanout);
        assert!(
            text().starts_with(&format!("{CLEAR}[2/3] b.gran  running")),
            "{}",
            text()
        );
        buffer.lock().unwrap().clear();
        first.tick(&fanout);
        // Redrawn from the one line on screen: granule 1 above granule 2.
        let drawn = text();
        let (a, b) = drawn.split_once('\n').expect("two lines");
        assert!(
            a.starts_with(&format!("{CLEAR}[1/3] a.gran  running")),
            "{drawn:?}"
        );
        assert!(b.starts_with("\x1b[2K[2/3] b.gran  running"), "{drawn:?}");
        // A line about one granule takes both bars off first, from the top one.
        buffer.lock().unwrap().clear();
        second.say("done in 1.0 s");
        assert_eq!(text(), "\r\x1b[1A\x1b[J[2/3] b.gran: done in 1.0 s\n");
        // Its run ends: only the other granule's bar is drawn again.
        drop(second);
        buffer.lock().unwrap().clear();
        first.last_print = None;
        first.tick(&fanout);
        assert!(
            text().starts_with(&format!("{CLEAR}[1/3] a.gran  running")),
            "{}",
            text()
        );
        assert!(
            !text().contains("b.gran") && !text().contains('\n'),
            "{}",
            text()
        );
    }

    #[test]
    fn plain_output_has_no_control_characters_and_waits_a_second() {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let mut progress = Progress::with_sink(
            0,
            1,
            "g.gran",
            10,
            false,
            Sink::Buffer(buffer.clone()),
            Arc::default(),
        );
        let fanout = Fanout::new(
            1,
            crate::domain::fanout::machine::Limits {
                max_workers: 2,
                max_lead: 2,
            },
            true,
        );
        // Size unknown: nothing to say yet.
        progress.tick(&fanout);
        progress.say("done");
        drop(progress);
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "[1/1] g.gran: done\n");
    }
}
