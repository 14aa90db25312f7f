//! Panics caught as findings: a broken engine (or harness) is a verdict to
//! report with its scenario, seed and replay command, not the end of the
//! process. One hook for the whole process, quiet only inside [`catch`].

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

/// A caught panic: where and what, as the panic hook saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnginePanic {
    /// The panic's place (`file:line:column`), when it had one.
    pub place: Option<String>,
    /// What `panic!` (or the assertion) formatted.
    pub message: String,
}

impl std::fmt::Display for EnginePanic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.place {
            Some(place) => write!(f, "panicked at {place}: {}", self.message),
            None => write!(f, "panicked: {}", self.message),
        }
    }
}

thread_local! {
    /// Whether this thread is inside [`catch`], where the panic hook keeps
    /// quiet and leaves the panic to the report.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    /// The first panic caught on this thread, as the hook saw it (the
    /// payload alone has no place).
    static CAUGHT: RefCell<Option<EnginePanic>> = const { RefCell::new(None) };
}

/// Runs `work` and returns its panic, if any. Panics outside it (another
/// thread, a test) go to the previous hook as before.
pub fn catch<T>(work: impl FnOnce() -> T) -> Result<T, EnginePanic> {
    static QUIET_HOOK: Once = Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = panic::take_hook();
        // The hook sees every panic of the process, so it must not panic
        // itself: a thread being torn down has no thread-locals left.
        panic::set_hook(Box::new(move |info| {
            if !CATCHING.try_with(Cell::get).unwrap_or(false) {
                return previous(info);
            }
            // A panic while unwinding from the first (a destructor) is not
            // the finding; the first one is.
            let _ = CAUGHT.try_with(|caught| {
                let mut caught = caught.borrow_mut();
                if caught.is_none() {
                    let place = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
                    *caught = Some(EnginePanic { place, message: panic_message(info.payload()) });
                }
            });
        }));
    });
    let catching = CATCHING.replace(true);
    let result = panic::catch_unwind(AssertUnwindSafe(work));
    CATCHING.set(catching);
    let caught = CAUGHT.take();
    result.map_err(|payload| caught.unwrap_or_else(|| EnginePanic { place: None, message: panic_message(&*payload) }))
}

/// A panic's message: what `panic!` formatted, when it formatted a string.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(message), _) => (*message).to_string(),
        (_, Some(message)) => message.clone(),
        _ => "a panic with no message".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caught_panic_keeps_its_place_and_message_and_the_next_run_is_clean() {
        let line = line!() + 1;
        let caught = catch(|| -> u32 { panic!("sequence {} finished twice", 7) }).unwrap_err();
        assert_eq!(caught.message, "sequence 7 finished twice");
        let place = caught.place.clone().expect("a panic! has a place");
        assert!(place.starts_with(&format!("{}:{line}:", file!())), "{place}");
        assert_eq!(caught.to_string(), format!("panicked at {place}: sequence 7 finished twice"));
        assert_eq!(catch(|| 5), Ok(5), "nothing from an earlier panic is left for a run that does not panic");
    }
}
