#!/usr/bin/env bash
# The architecture's rules, checked on the source (see ARCHITECTURE.md): arrows point only
# down (cmd -> domain -> base), clap lives only in src/cmd, and nothing below the commands
# prints to the terminal or picks an exit status. Test code (a `tests.rs` file, whatever
# follows a file's top-level `#[cfg(test)]`, and `base/ci_skip.rs`, the tests' skip helper)
# may do as it likes.
# Exit 0 when the rules hold, 1 with one line per breach (file:line: rule: text).
set -euo pipefail
cd "$(dirname "$0")/.."

# shipped_lines DIR: "file:line:text" for every non-test line of the .rs files under DIR.
shipped_lines() {
    find "$1" -name '*.rs' ! -name tests.rs ! -name ci_skip.rs -print0 | sort -z |
        xargs -0 awk '
            FNR == 1 { in_test = 0 }
            /^#\[cfg\(test\)\]/ { in_test = 1 }
            !in_test && !/^[[:space:]]*\/\// { print FILENAME ":" FNR ":" $0 }'
}

breaches=0
# rule NAME DIR REGEX: every shipped line under DIR matching REGEX breaks rule NAME.
rule() {
    local found
    found=$(shipped_lines "$2" | grep -E -- "$3" || true)
    if [[ -n "$found" ]]; then
        sed "s/^\([^:]*:[0-9]*\):/\1: $1:/" <<<"$found" >&2
        breaches=$((breaches + $(wc -l <<<"$found")))
    fi
}

rule "base must not use the domain or the commands" src/base 'crate::(domain|cmd)\b'
rule "the domain must not use the commands" src/domain 'crate::cmd\b'
rule "clap belongs to the commands" src/base '\bclap\b'
rule "clap belongs to the commands" src/domain '\bclap\b'
rule "only commands print to the terminal" src/base '\b(e?println!|e?print!)|std::io::(stdout|stderr)\(\)'
rule "only commands print to the terminal" src/domain '\b(e?println!|e?print!)|std::io::(stdout|stderr)\(\)'
rule "only commands choose exit statuses" src/base '\b(ExitCode|process::exit)\b'
rule "only commands choose exit statuses" src/domain '\b(ExitCode|process::exit)\b'
rule "unsafe code lives in base/unix.rs only" src/domain '\bunsafe\b'
rule "unsafe code lives in base/unix.rs only" src/cmd '\bunsafe\b'

if ((breaches > 0)); then
    echo "check-layers: $breaches line(s) break the architecture's rules (see ARCHITECTURE.md)" >&2
    exit 1
fi
echo "check-layers: cmd -> domain -> base, clap in cmd only, no terminal output or exit status below cmd"
