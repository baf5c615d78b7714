//! Where the command line writes. Data (plans, JSON, tables) goes to
//! standard output; when whoever reads it goes away (`ctm plan | head`),
//! ctm exits quietly, as ripgrep does, instead of panicking on the broken
//! pipe. Messages go to standard error, and a failure to write one is
//! ignored: it must never stop a switch half way.

use std::io::{self, IsTerminal as _, Write};

use crate::engine::Event;

/// Standard output, exiting quietly (status 0) when its reader is gone.
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        quiet_on_broken_pipe(io::stdout().lock().write(bytes))
    }

    fn flush(&mut self) -> io::Result<()> {
        quiet_on_broken_pipe(io::stdout().lock().flush())
    }
}

fn quiet_on_broken_pipe<T>(result: io::Result<T>) -> io::Result<T> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => other,
    }
}

/// Writes `text` to standard output.
pub fn out(text: &str) {
    // Any error but a broken pipe (which exits) has nowhere to be told.
    let _ = Stdout.write_all(text.as_bytes());
}

/// Writes `text` and a newline to standard output.
pub fn outln(text: &str) {
    out(&format!("{text}\n"));
}

/// Writes text with ANSI colours to standard output, without them where
/// it is not a colour terminal (or NO_COLOR is set).
pub fn out_styled(text: &str) {
    match anstream::AutoStream::choice(&io::stdout()) {
        anstream::ColorChoice::Never => out(&anstream::adapter::strip_str(text).to_string()),
        _ => out(text),
    }
}

/// Writes `text` and a newline to standard error; a failure is ignored.
pub fn errln(text: &str) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// [`errln`] with ANSI colours where standard error shows them.
pub fn errln_styled(text: &str) {
    match anstream::AutoStream::choice(&io::stderr()) {
        anstream::ColorChoice::Never => errln(&anstream::adapter::strip_str(text).to_string()),
        _ => errln(text),
    }
}

/// Prints an event of a use case on standard error; the steps of a
/// switch are indented under the line that started it.
pub fn say(event: Event) {
    let indent = if event.is_step() { "  " } else { "" };
    for line in event.to_string().lines() {
        errln(&format!("{indent}{line}"));
    }
}

/// Writes an event of a use case as one JSON line on standard output
/// (`--json`: for programs, such as `ctm fleet` following a host's ctm).
pub fn say_json(event: Event) {
    match serde_json::to_string(&event) {
        Ok(line) => outln(&line),
        Err(e) => errln(&format!("cannot write an event as JSON: {e}")),
    }
}

/// Where a command's events go: JSON lines on standard output with
/// `--json`, else lines of text on standard error.
pub fn reporter(json: bool) -> fn(Event) {
    if json { say_json } else { say }
}

/// Whether standard input is a terminal that can be asked a question.
pub fn can_ask() -> bool {
    io::stdin().is_terminal()
}
