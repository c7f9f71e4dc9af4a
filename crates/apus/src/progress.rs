//! Progress of long commands on standard error: one line redrawn in place
//! on a terminal, or, when standard error is a file or a pipe, a plain
//! line now and then (or nothing), so logs stay readable.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often a terminal's line is redrawn at most.
const REDRAW: Duration = Duration::from_millis(100);

pub struct Progress {
    terminal: bool,
    /// Off a terminal: a plain line at most this often; `None` prints none.
    plain_every: Option<Duration>,
    last: Option<Instant>,
    drawn: bool,
}

impl Progress {
    /// Progress on standard error; `plain_every` is how often a plain line
    /// is printed when it is not a terminal (`None`: never).
    pub fn new(plain_every: Option<Duration>) -> Self {
        Progress {
            terminal: std::io::stderr().is_terminal(),
            plain_every,
            last: None,
            drawn: false,
        }
    }

    /// No output at all (a `--debug` or `--json` run).
    pub fn silent() -> Self {
        Progress {
            terminal: false,
            plain_every: None,
            last: None,
            drawn: false,
        }
    }

    /// Shows `line()` if it is time to; `line` is built only then.
    /// `force` shows it whatever the time (a last figure).
    pub fn update(&mut self, force: bool, line: impl FnOnce() -> String) {
        let every = if self.terminal {
            REDRAW
        } else {
            match self.plain_every {
                Some(every) => every,
                None => return,
            }
        };
        let now = Instant::now();
        if !force && self.last.is_some_and(|t| now.duration_since(t) < every) {
            return;
        }
        self.last = Some(now);
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r\x1b[K{}", line());
            self.drawn = true;
        } else {
            let _ = writeln!(err, "{}", line());
        }
        let _ = err.flush();
    }

    /// Clears the terminal's line, if one was drawn.
    pub fn finish(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
