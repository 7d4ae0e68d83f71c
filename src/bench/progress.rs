//! The live progress line on stderr (indicatif), drawn only when stderr is a terminal so logs
//! and scripts get clean output.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::run::Shared;

/// A spinner with running counts and rates over the last tick.
pub struct Progress {
    bar: Option<ProgressBar>,
    shared: Arc<Shared>,
    last: (Instant, u64, u64),
}

impl Progress {
    /// A progress line if `enabled` and stderr is a terminal; otherwise a no-op.
    pub fn new(enabled: bool, shared: &Arc<Shared>) -> Progress {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}") {
                bar.set_style(style);
            }
            bar
        });
        Progress {
            bar,
            shared: shared.clone(),
            last: (Instant::now(), 0, 0),
        }
    }

    /// Redraws with the current counts.
    pub fn update(&mut self) {
        let Some(bar) = &self.bar else { return };
        let now = Instant::now();
        let produced = self.shared.produced.load(Ordering::Relaxed);
        let consumed = self.shared.consumed.load(Ordering::Relaxed);
        let dt = now.duration_since(self.last.0).as_secs_f64().max(1e-3);
        let produced_rate = (produced - self.last.1) as f64 / dt;
        let consumed_rate = (consumed - self.last.2) as f64 / dt;
        self.last = (now, produced, consumed);
        bar.set_message(format!(
            "produced {produced} ({produced_rate:.0}/s)  consumed {consumed} ({consumed_rate:.0}/s)  errors {}",
            self.shared.errors.load(Ordering::Relaxed)
        ));
        bar.tick();
    }

    /// Removes the line.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
