//! The few SVG pieces every chart is made of: escaping, linear scales, tick steps that read
//! well (seconds, and binary sizes), a frame with axes and grid, and a string builder.
//!
//! Pure string building: no I/O, no knowledge of reports. Coordinates are rounded to 0.01
//! px so pages stay small and tests can compare them.

use std::fmt::Write;

use super::fmt;

/// Width of every chart, in SVG units (the page scales it to the window).
pub const WIDTH: f64 = 1100.0;
/// Left margin: lane names and y-axis labels.
pub const LEFT: f64 = 150.0;
pub const RIGHT: f64 = 24.0;
pub const TOP: f64 = 12.0;
pub const BOTTOM: f64 = 34.0;

/// Escapes text and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// A number for a coordinate: at most two decimals, no trailing zeros.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "0".into();
    }
    let r = (v * 100.0).round() / 100.0;
    let mut s = format!("{r:.2}");
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.pop();
    }
    if s == "-0" { "0".into() } else { s }
}

/// Maps a domain `[d0, d1]` onto a pixel range `[r0, r1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    pub d0: f64,
    pub d1: f64,
    pub r0: f64,
    pub r1: f64,
}

impl Scale {
    pub fn new(d0: f64, d1: f64, r0: f64, r1: f64) -> Scale {
        let d1 = if d1 > d0 { d1 } else { d0 + 1.0 };
        Scale { d0, d1, r0, r1 }
    }

    pub fn at(&self, v: f64) -> f64 {
        self.r0 + (v - self.d0) / (self.d1 - self.d0) * (self.r1 - self.r0)
    }

    /// Pixels per domain unit.
    pub fn per_unit(&self) -> f64 {
        (self.r1 - self.r0) / (self.d1 - self.d0)
    }
}

/// A tick step for a time axis of `span` seconds: at most about `max` ticks.
pub fn time_step(span: f64, max: usize) -> f64 {
    const STEPS: [f64; 27] = [
        0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0,
        60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 10800.0, 21600.0, 43200.0,
        86400.0,
    ];
    let want = span / max.max(1) as f64;
    STEPS
        .iter()
        .copied()
        .find(|&s| s >= want)
        .unwrap_or_else(|| (want / 86400.0).ceil() * 86400.0)
}

/// A tick step for a byte axis up to `top`: a power of two (times 1 KiB or more), at most
/// about `max` ticks, so labels read `256 MiB`, `512 MiB`, `1 GiB`.
pub fn bytes_step(top: u64, max: usize) -> u64 {
    let want = top / max.max(1) as u64;
    let mut step = 1024u64;
    while step < want {
        step *= 2;
    }
    step
}

/// A tick step for a count axis up to `top`: 1, 2, 5, 10, 20, 50, ...
pub fn count_step(top: f64, max: usize) -> f64 {
    let want = (top / max.max(1) as f64).max(1.0);
    let mut base = 1.0;
    loop {
        for m in [1.0, 2.0, 5.0] {
            if base * m >= want {
                return base * m;
            }
        }
        base *= 10.0;
    }
}

/// What a y axis shows.
#[derive(Debug, Clone, Copy)]
pub enum YAxis {
    Count {
        top: f64,
    },
    Bytes {
        top: u64,
    },
    /// No ticks: lanes are labelled by the chart itself.
    Lanes,
}

impl YAxis {
    /// The top of the domain (rounded up to a whole tick) and the ticks.
    fn ticks(self) -> (f64, Vec<(f64, String)>) {
        match self {
            YAxis::Count { top } => {
                let step = count_step(top, 5);
                let top = ((top / step).ceil() * step).max(step);
                let n = (top / step).round() as usize;
                let ticks = (0..=n)
                    .map(|i| (i as f64 * step, fmt::count(i as f64 * step)))
                    .collect();
                (top, ticks)
            }
            YAxis::Bytes { top } => {
                let step = bytes_step(top.max(1), 5);
                let n = top.div_ceil(step).max(1);
                let ticks = (0..=n)
                    .map(|i| (i as f64 * step as f64, fmt::size(i * step)))
                    .collect();
                ((n * step) as f64, ticks)
            }
            YAxis::Lanes => (1.0, Vec::new()),
        }
    }
}

/// A chart's frame: the plot area, the x scale (seconds) and the y scale.
pub struct Frame {
    pub height: f64,
    pub x: Scale,
    pub y: Scale,
    y_ticks: Vec<(f64, String)>,
    x_label: String,
    y_label: String,
    /// Labels under the x axis at these domain values instead of time ticks.
    x_categories: Option<Vec<(f64, String)>>,
}

impl Frame {
    /// A frame over categories instead of time: `labels[i]` is centred on `[i, i + 1]`.
    pub fn categories(
        height: f64,
        labels: &[String],
        y: YAxis,
        x_label: &str,
        y_label: &str,
    ) -> Frame {
        let mut f = Frame::new(height, labels.len().max(1) as f64, y, x_label, y_label);
        f.x_categories = Some(
            labels
                .iter()
                .enumerate()
                .map(|(i, l)| (i as f64 + 0.5, l.clone()))
                .collect(),
        );
        f
    }

    /// A frame `height` px tall over `[0, seconds]`.
    pub fn new(height: f64, seconds: f64, y: YAxis, x_label: &str, y_label: &str) -> Frame {
        let (top, y_ticks) = y.ticks();
        let plot_bottom = height - BOTTOM;
        Frame {
            height,
            x: Scale::new(0.0, seconds.max(1e-3), LEFT, WIDTH - RIGHT),
            y: Scale::new(0.0, top, plot_bottom, TOP),
            y_ticks,
            x_label: x_label.into(),
            y_label: y_label.into(),
            x_categories: None,
        }
    }

    pub fn plot_top(&self) -> f64 {
        TOP
    }

    pub fn plot_bottom(&self) -> f64 {
        self.height - BOTTOM
    }

    /// Opens the `<svg>` with its data attributes (already escaped `name="value"` pairs).
    pub fn open(&self, chart: &str, label: &str, data: &[(&str, String)]) -> Svg {
        let mut s = Svg::default();
        let _ = write!(
            s.0,
            r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="{}" viewBox="0 0 {} {}" role="img" aria-label="{}""#,
            esc(chart),
            num(WIDTH),
            num(self.height),
            esc(label)
        );
        let _ = write!(
            s.0,
            r#" data-x0="{}" data-px-per-second="{}""#,
            num(self.x.r0),
            self.x.per_unit()
        );
        for (k, v) in data {
            let _ = write!(s.0, r#" data-{k}="{}""#, esc(v));
        }
        s.0.push('>');
        self.grid(&mut s);
        s
    }

    fn grid(&self, s: &mut Svg) {
        let (x0, x1) = (self.x.r0, self.x.r1);
        let (top, bottom) = (self.plot_top(), self.plot_bottom());
        s.0.push_str(r#"<g class="axis">"#);
        for (v, label) in &self.y_ticks {
            let y = self.y.at(*v);
            s.line(x0, y, x1, y, "grid");
            s.text(x0 - 6.0, y + 4.0, "end", label, "tick");
        }
        if let Some(labels) = &self.x_categories {
            for (v, label) in labels {
                s.text(self.x.at(*v), bottom + 14.0, "middle", label, "tick");
            }
        }
        let span = self.x.d1 - self.x.d0;
        let step = time_step(span, 10);
        let mut t = 0.0;
        while self.x_categories.is_none() && t <= self.x.d1 + step * 1e-9 {
            let x = self.x.at(t);
            s.line(x, top, x, bottom, "grid");
            s.text(
                x,
                bottom + 14.0,
                "middle",
                &fmt::seconds_tick(t, step),
                "tick",
            );
            t += step;
        }
        s.line(x0, bottom, x1, bottom, "axis-line");
        s.line(x0, top, x0, bottom, "axis-line");
        s.text(x1, self.height - 4.0, "end", &self.x_label, "axis-label");
        if !self.y_label.is_empty() {
            s.text(8.0, top + 10.0, "start", &self.y_label, "axis-label");
        }
        s.0.push_str("</g>");
    }
}

/// An SVG document being written.
#[derive(Default)]
pub struct Svg(pub String);

impl Svg {
    pub fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, class: &str) {
        let _ = write!(
            self.0,
            r#"<line class="{class}" x1="{}" y1="{}" x2="{}" y2="{}"/>"#,
            num(x1),
            num(y1),
            num(x2),
            num(y2)
        );
    }

    pub fn text(&mut self, x: f64, y: f64, anchor: &str, text: &str, class: &str) {
        let _ = write!(
            self.0,
            r#"<text class="{class}" x="{}" y="{}" text-anchor="{anchor}">{}</text>"#,
            num(x),
            num(y),
            esc(text)
        );
    }

    /// A rectangle with a tooltip; `data` are extra `data-*` attributes.
    #[allow(clippy::too_many_arguments)]
    pub fn rect(
        &mut self,
        x: f64,
        y: f64,
        w: f64,
        h: f64,
        class: &str,
        data: &[(&str, String)],
        tip: &str,
    ) {
        let _ = write!(
            self.0,
            r#"<rect class="{class}" x="{}" y="{}" width="{}" height="{}""#,
            num(x),
            num(y),
            num(w.max(0.0)),
            num(h.max(0.0))
        );
        for (k, v) in data {
            let _ = write!(self.0, r#" data-{k}="{}""#, esc(v));
        }
        if tip.is_empty() {
            self.0.push_str("/>");
        } else {
            let _ = write!(self.0, "><title>{}</title></rect>", esc(tip));
        }
    }

    /// A small dot, with a tooltip.
    pub fn dot(&mut self, x: f64, y: f64, class: &str, tip: &str) {
        let _ = write!(
            self.0,
            r#"<circle class="{class}" cx="{}" cy="{}" r="3.5"><title>{}</title></circle>"#,
            num(x),
            num(y),
            esc(tip)
        );
    }

    /// A polyline through `points` (already in pixels).
    pub fn polyline(&mut self, points: &[(f64, f64)], class: &str, data: &[(&str, String)]) {
        let _ = write!(self.0, r#"<polyline class="{class}""#);
        for (k, v) in data {
            let _ = write!(self.0, r#" data-{k}="{}""#, esc(v));
        }
        self.0.push_str(r#" points=""#);
        for (i, (x, y)) in points.iter().enumerate() {
            if i > 0 {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{},{}", num(*x), num(*y));
        }
        self.0.push_str(r#""/>"#);
    }

    /// A closed area under `points`, down to `base`.
    pub fn area(&mut self, points: &[(f64, f64)], base: f64, class: &str) {
        let (Some(first), Some(last)) = (points.first(), points.last()) else {
            return;
        };
        let mut all = Vec::with_capacity(points.len() + 2);
        all.push((first.0, base));
        all.extend_from_slice(points);
        all.push((last.0, base));
        let _ = write!(self.0, r#"<polygon class="{class}" points=""#);
        for (i, (x, y)) in all.iter().enumerate() {
            if i > 0 {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{},{}", num(*x), num(*y));
        }
        self.0.push_str(r#""/>"#);
    }

    pub fn close(mut self) -> String {
        self.0.push_str("</svg>");
        self.0
    }
}

/// `(t, v)` steps as a staircase: each value holds until the next change.
pub fn staircase(points: &[(f64, f64)], until: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len() * 2 + 1);
    for (i, &(t, v)) in points.iter().enumerate() {
        if i > 0 {
            out.push((t, points[i - 1].1));
        }
        out.push((t, v));
    }
    if let Some(&(t, v)) = points.last()
        && until > t
    {
        out.push((until, v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short_and_text_is_escaped() {
        assert_eq!(num(1.0), "1");
        assert_eq!(num(1.256), "1.26");
        assert_eq!(num(-0.001), "0");
        assert_eq!(num(f64::NAN), "0");
        assert_eq!(esc(r#"<a & "b">"#), "&lt;a &amp; &quot;b&quot;&gt;");
        assert_eq!(esc("bell\u{7}"), "bell?");
    }

    #[test]
    fn steps_read_well() {
        assert_eq!(time_step(1.27, 10), 0.2);
        assert_eq!(time_step(600.0, 10), 60.0);
        assert_eq!(time_step(86400.0 * 30.0, 10), 86400.0 * 3.0);
        assert_eq!(bytes_step(80 << 20, 5), 16 << 20);
        assert_eq!(bytes_step(3 << 30, 5), 1 << 30);
        assert_eq!(count_step(7.0, 5), 2.0);
        assert_eq!(count_step(0.0, 5), 1.0);
        assert_eq!(count_step(4300.0, 5), 1000.0);
    }

    #[test]
    fn scales_map_and_staircases_hold_values() {
        let s = Scale::new(0.0, 10.0, 100.0, 200.0);
        assert_eq!(s.at(5.0), 150.0);
        assert_eq!(s.per_unit(), 10.0);
        assert_eq!(
            Scale::new(3.0, 3.0, 0.0, 1.0).d1,
            4.0,
            "an empty domain is widened"
        );
        let st = staircase(&[(0.0, 0.0), (1.0, 2.0), (3.0, 1.0)], 4.0);
        assert_eq!(
            st,
            vec![
                (0.0, 0.0),
                (1.0, 0.0),
                (1.0, 2.0),
                (3.0, 2.0),
                (3.0, 1.0),
                (4.0, 1.0)
            ]
        );
    }
}
