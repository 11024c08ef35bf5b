//! The registry of live handles. Every handle libserl gives out is recorded
//! with its kind and whether a call is using it, so that a handle used after
//! it was freed, freed twice, of the wrong kind, used by two threads at once
//! or re-entered from its own callback is an error rather than undefined
//! behaviour. (A freed handle whose address a later handle of the same kind
//! happens to reuse cannot be told apart from that handle.)

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::boundary::FfiError;

/// What a live handle is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "trainer"), allow(dead_code))]
enum State {
    /// No call is using it.
    Idle,
    /// A call holds it.
    Busy,
    /// A call has lent it to a callback (e.g. `serl_train`'s after a step).
    InCallback,
}

struct Entry {
    kind: &'static str,
    state: State,
}

static LIVE: Mutex<BTreeMap<usize, Entry>> = Mutex::new(BTreeMap::new());

fn live() -> MutexGuard<'static, BTreeMap<usize, Entry>> {
    // The map stays consistent even if a holder panicked: every update is
    // a single insert, remove or field write.
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Which calls may use a handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "trainer"), allow(dead_code))]
pub(crate) enum Access {
    /// Only while no other call uses it.
    Exclusive,
    /// Also from a callback the handle is lent to (reading, evaluating, saving).
    FromCallback,
}

/// Gives out `value` as a new handle of `kind`.
pub(crate) fn register<T>(value: T, kind: &'static str) -> *mut T {
    let ptr = Box::into_raw(Box::new(value));
    live().insert(
        ptr as usize,
        Entry {
            kind,
            state: State::Idle,
        },
    );
    ptr
}

fn not_live(kind: &str) -> FfiError {
    FfiError::InvalidArgument(format!(
        "{kind} is not a live handle: freed already, or not made by libserl"
    ))
}

fn in_use(kind: &str, state: State) -> FfiError {
    FfiError::InvalidArgument(match state {
        State::InCallback => {
            format!("{kind} is lent to a callback, which may not step, train or free it")
        }
        _ => format!(
            "{kind} is in use by another call (from another thread at the same time, \
             or from a callback of that call)"
        ),
    })
}

/// A call's hold on a live handle; dropping it gives the handle back.
pub(crate) struct Lease<T> {
    ptr: *mut T,
    /// The state to restore when the lease ends.
    before: State,
}

/// Takes hold of the handle `ptr` of `kind` for one call.
pub(crate) fn lease<T>(
    ptr: *mut T,
    kind: &'static str,
    access: Access,
) -> Result<Lease<T>, FfiError> {
    if ptr.is_null() {
        return Err(FfiError::InvalidArgument(format!("{kind} is NULL")));
    }
    let mut map = live();
    let entry = match map.get_mut(&(ptr as usize)) {
        Some(e) if e.kind == kind => e,
        _ => return Err(not_live(kind)),
    };
    let before = entry.state;
    match (before, access) {
        (State::Idle, _) | (State::InCallback, Access::FromCallback) => {}
        (s, _) => return Err(in_use(kind, s)),
    }
    entry.state = State::Busy;
    Ok(Lease { ptr, before })
}

impl<T> Lease<T> {
    /// The handle's value. Only the lease holder reaches it, one call at a
    /// time, so the reference is unique while it lives.
    pub(crate) fn get(&mut self) -> &mut T {
        // SAFETY: registered by `register` (a live Box) and marked Busy for
        // this lease, so no other call dereferences it meanwhile.
        unsafe { &mut *self.ptr }
    }

    #[cfg_attr(not(feature = "trainer"), allow(dead_code))]
    /// Runs `f` with the handle lent out: calls from `f` with
    /// [`Access::FromCallback`] may use it meanwhile.
    pub(crate) fn lend<R>(&mut self, f: impl FnOnce() -> R) -> R {
        set_state(self.ptr as usize, State::InCallback);
        let r = f();
        set_state(self.ptr as usize, State::Busy);
        r
    }
}

fn set_state(key: usize, state: State) {
    if let Some(e) = live().get_mut(&key) {
        e.state = state;
    }
}

impl<T> Drop for Lease<T> {
    fn drop(&mut self) {
        set_state(self.ptr as usize, self.before);
    }
}

/// Takes the handle `ptr` of `kind` out of the registry to free it. NULL is
/// `Ok(None)`; a handle not live or in use is an error and stays untouched.
pub(crate) fn unregister<T>(ptr: *mut T, kind: &'static str) -> Result<Option<Box<T>>, FfiError> {
    if ptr.is_null() {
        return Ok(None);
    }
    let mut map = live();
    match map.get(&(ptr as usize)) {
        Some(e) if e.kind == kind && e.state == State::Idle => {}
        Some(e) if e.kind == kind => return Err(in_use(kind, e.state)),
        _ => return Err(not_live(kind)),
    }
    map.remove(&(ptr as usize));
    // SAFETY: registered by `register` from a Box and now out of the
    // registry, so no call reaches it any more.
    Ok(Some(unsafe { Box::from_raw(ptr) }))
}
