//! The master's progress bar: done / total, failures, jobs per second and ETA, drawn
//! on stderr only when it is a terminal.
//!
//! Every conductor of a process draws its own bar, labelled with its worker type, in
//! one group at the bottom of the terminal, so several conductors at once do not
//! draw over each other; [`above_bars`] lets master code print above them.
//!
//! Workers' own output would tear a bar drawn over it, so while a bar shows, workers
//! are started with piped stdout and stderr and their lines are printed above the bar
//! (see [`Progress::print`]). Without the `progress` feature every call is a no-op.

/// Set to `0`, `off`, `no` or `false` to switch the bar off without recompiling.
pub const ENV_PROGRESS: &str = "CONDUCTOR_PROGRESS";

/// Whether a bar should show: asked for, not switched off by the environment, stderr
/// is a terminal, and this is not a test binary.
fn wanted(enabled: bool) -> bool {
    use std::io::IsTerminal;
    let switched_off = std::env::var(ENV_PROGRESS).is_ok_and(|v| {
        matches!(
            v.to_ascii_lowercase().as_str(),
            "0" | "off" | "no" | "false"
        )
    });
    enabled && !switched_off && std::io::stderr().is_terminal() && !crate::boot::in_test_binary()
}

/// Writes a line of a worker's output where the worker would have written it.
fn write_line(line: &[u8], to_stderr: bool) {
    use std::io::Write;
    let _ = if to_stderr {
        std::io::stderr().lock().write_all(line)
    } else {
        std::io::stdout().lock().write_all(line)
    };
}

#[cfg(feature = "progress")]
pub use bar::above_bars;
#[cfg(feature = "progress")]
pub(crate) use bar::Progress;
#[cfg(not(feature = "progress"))]
pub use silent::above_bars;
#[cfg(not(feature = "progress"))]
pub(crate) use silent::Progress;

#[cfg(feature = "progress")]
mod bar {
    use std::sync::OnceLock;
    use std::time::Duration;

    use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

    /// The bars of every conductor in this process, drawn together.
    static BARS: OnceLock<MultiProgress> = OnceLock::new();

    fn bars() -> &'static MultiProgress {
        BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)))
    }

    /// Runs `print` with the progress bars of this process cleared from the terminal,
    /// then draws them again below what it printed: how master code prints while
    /// conductors run without tearing a bar. Without a bar on screen it just runs
    /// `print`.
    ///
    /// ```
    /// conductor::above_bars(|| println!("halfway there"));
    /// ```
    pub fn above_bars<R>(print: impl FnOnce() -> R) -> R {
        match BARS.get() {
            Some(bars) => bars.suspend(print),
            None => print(),
        }
    }

    /// A handle on the bar; clones draw the same bar.
    #[derive(Clone)]
    pub(crate) struct Progress {
        bar: Option<ProgressBar>,
        total: Option<u64>,
        shown: (u64, u64),
    }

    impl Progress {
        /// A bar labelled `label` (the worker type), below those of the conductors
        /// already running.
        pub fn start(enabled: bool, total: Option<u64>, label: &str) -> Self {
            if !super::wanted(enabled) {
                return Progress {
                    bar: None,
                    total,
                    shown: (0, 0),
                };
            }
            let template = match total {
                Some(_) => {
                    "{prefix:.bold} {spinner:.green} [{elapsed_precise}] {wide_bar:.cyan/blue} \
                     {pos}/{len} {msg}{rate} ETA {eta}"
                }
                None => {
                    "{prefix:.bold} {spinner:.green} [{elapsed_precise}] {pos} done {msg}{rate}"
                }
            };
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key(
                    "rate",
                    |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0} jobs/s", state.per_sec());
                    },
                )
                .progress_chars("=> ");
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden())
                .with_style(style)
                .with_prefix(label.to_string());
            let bar = bars().add(bar);
            // The spinner and rate keep moving while long jobs run.
            bar.enable_steady_tick(Duration::from_millis(200));
            Progress {
                bar: Some(bar),
                total,
                shown: (0, 0),
            }
        }

        pub fn is_visible(&self) -> bool {
            self.bar.is_some()
        }

        /// Shows `done` of the jobs, `failed` of them failed, `skipped` were done
        /// by an earlier run (and leave the total).
        pub fn update(&mut self, done: u64, failed: u64, skipped: u64) {
            let Some(bar) = &self.bar else { return };
            if (failed, skipped) != self.shown {
                self.shown = (failed, skipped);
                if let Some(total) = self.total {
                    bar.set_length(total.saturating_sub(skipped));
                }
                let mut message = String::new();
                if failed > 0 {
                    message.push_str(&format!("{failed} failed "));
                }
                if skipped > 0 {
                    message.push_str(&format!("{skipped} skipped "));
                }
                bar.set_message(message);
            }
            bar.set_position(done);
        }

        /// Tells the person watching the bar what the run is doing.
        pub fn note(&self, line: &str) {
            if let Some(bar) = &self.bar {
                bar.println(line);
            }
        }

        /// Prints a line of a worker's output above the bar.
        pub fn print(&self, line: &[u8], to_stderr: bool) {
            let write = || super::write_line(line, to_stderr);
            match &self.bar {
                Some(bar) => bar.suspend(write),
                None => write(),
            }
        }

        /// Leaves the final state of the bar on screen, as far as the run got.
        pub fn finish(&self) {
            if let Some(bar) = &self.bar {
                bar.abandon();
            }
        }
    }
}

#[cfg(not(feature = "progress"))]
mod silent {
    #[derive(Clone)]
    pub(crate) struct Progress;

    /// Runs `print`: without the `progress` feature there is no bar to clear.
    pub fn above_bars<R>(print: impl FnOnce() -> R) -> R {
        print()
    }

    impl Progress {
        pub fn start(enabled: bool, _total: Option<u64>, _label: &str) -> Self {
            let _ = super::wanted(enabled);
            Progress
        }

        pub fn is_visible(&self) -> bool {
            false
        }

        pub fn update(&mut self, _done: u64, _failed: u64, _skipped: u64) {}

        pub fn note(&self, _line: &str) {}

        pub fn print(&self, line: &[u8], to_stderr: bool) {
            super::write_line(line, to_stderr);
        }

        pub fn finish(&self) {}
    }
}
