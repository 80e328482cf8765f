//! Ctrl-C, registered with signal-hook once per process: the first SIGINT
//! cancels the run in progress (which still prints its report), a second
//! one exits at once with 130. The plan's cancel wakes every waiting loop,
//! so nothing polls for it.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, Once};

use crate::plan::Plan;

/// What the next Ctrl-C cancels: a run in progress, or a wait before one.
type Cancel = Arc<dyn Fn() + Send + Sync>;
static CURRENT: Mutex<Option<Cancel>> = Mutex::new(None);
static INSTALL: Once = Once::new();

fn current() -> std::sync::MutexGuard<'static, Option<Cancel>> {
    CURRENT.lock().unwrap_or_else(|e| e.into_inner())
}

/// Installs the handlers (once); a thread waits for SIGINT and cancels the
/// run in progress.
fn install() {
    INSTALL.call_once(|| {
        let first = Arc::new(AtomicBool::new(false));
        // Registered before the flag's own handler, so it sees the flag as
        // the earlier SIGINT left it: only a second one exits.
        let _ = signal_hook::flag::register_conditional_shutdown(
            signal_hook::consts::SIGINT,
            130,
            first.clone(),
        );
        let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, first);
        if let Ok(mut signals) = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT])
        {
            let _ = std::thread::Builder::new()
                .name("uringfetch-sigint".into())
                .spawn(move || {
                    for _ in signals.forever() {
                        if let Some(cancel) = current().as_ref() {
                            cancel();
                        }
                    }
                });
        }
    });
}

/// While this lives, Ctrl-C cancels `plan`.
pub struct CancelOnCtrlC(());

impl CancelOnCtrlC {
    pub fn new(plan: Arc<Plan>) -> Self {
        Self::call(Arc::new(move || plan.cancel()))
    }

    /// While this lives, Ctrl-C calls `cancel` (a wait that must end).
    pub fn call(cancel: Cancel) -> Self {
        install();
        *current() = Some(cancel);
        Self(())
    }
}

impl Drop for CancelOnCtrlC {
    fn drop(&mut self) {
        *current() = None;
    }
}
