//! Values that survive restarts: `kept!` statics. A plain build gets a lazily initialized static
//! and nothing else (no serialization, no environment read). Under `cargo hot run`, when an edit
//! needs a restart, cargo hot asks the old program to write its kept values (as JSON, to a file
//! in its private patch directory) before stopping it, and the new program's first access to
//! each value reads it back instead of running the initializer: a login, a cache, a game's world
//! survive a struct change elsewhere. A value whose type no longer reads the saved data (its own
//! fields changed) is initialized anew, with one line on stderr saying so.

use std::ops::Deref;
use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A value that survives restarts under `cargo hot run`. Declare it with [`kept!`](crate::kept).
pub struct Kept<T: 'static> {
    #[cfg_attr(not(hot_mode), allow(dead_code))]
    name: &'static str,
    #[cfg_attr(not(hot_mode), allow(dead_code))]
    place: &'static str,
    init: fn() -> T,
    cell: OnceLock<T>,
}

impl<T> Kept<T> {
    /// Used by [`kept!`](crate::kept).
    ///
    /// # Safety
    /// The value must be a `static` (under `cargo hot run` its address is remembered for the
    /// program's lifetime, to write it before a restart).
    #[doc(hidden)]
    pub const unsafe fn new(name: &'static str, place: &'static str, init: fn() -> T) -> Self {
        Kept {
            name,
            place,
            init,
            cell: OnceLock::new(),
        }
    }
}

impl<T> Deref for Kept<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Target = T;

    fn deref(&self) -> &T {
        self.cell.get_or_init(|| {
            #[cfg(hot_mode)]
            {
                // SAFETY: `Kept::new` is unsafe and requires a static; `kept!` makes one.
                let this: &'static Kept<T> = unsafe { &*(self as *const Self) };
                hot::register(this);
                if let Some(v) = hot::restore(self.name, self.place) {
                    return v;
                }
            }
            (self.init)()
        })
    }
}

/// Declares statics whose values survive restarts under `cargo hot run`, like `LazyLock` statics
/// in a plain build. The type must be `serde::Serialize + serde::de::DeserializeOwned` (wrap
/// state you mutate in a `Mutex` or `RwLock`, which serde supports).
///
/// ```ignore
/// hot_runtime::kept! {
///     static SESSION: Session = Session::login(); // runs once, not on every restart
///     static STORE: std::sync::RwLock<HashMap<String, String>> = Default::default();
/// }
/// ```
#[macro_export]
macro_rules! kept {
    ($($(#[$attr:meta])* $vis:vis static $name:ident : $ty:ty = $init:expr;)+) => {$(
        $(#[$attr])*
        $vis static $name: $crate::Kept<$ty> = {
            fn __init() -> $ty {
                $init
            }
            // SAFETY: this is a static.
            unsafe {
                $crate::Kept::new(
                    concat!(module_path!(), "::", stringify!($name)),
                    concat!(file!(), ":", line!()),
                    __init,
                )
            }
        };
    )+};
}

#[cfg(hot_mode)]
pub(crate) mod hot {
    use std::collections::HashMap;
    use std::path::Path;
    use std::sync::Mutex;

    use super::*;

    /// A kept value that has been initialized (only those are written).
    trait Keep: Sync {
        fn name(&self) -> &'static str;
        fn save(&self) -> Result<serde_json::Value, serde_json::Error>;
    }

    impl<T: Serialize + Send + Sync> Keep for Kept<T> {
        fn name(&self) -> &'static str {
            self.name
        }
        fn save(&self) -> Result<serde_json::Value, serde_json::Error> {
            match self.cell.get() {
                Some(v) => serde_json::to_value(v),
                None => Ok(serde_json::Value::Null),
            }
        }
    }

    static LIVE: Mutex<Vec<&'static dyn Keep>> = Mutex::new(Vec::new());
    /// Values the previous run handed over, by name, until each is first used.
    static HANDED: Mutex<Option<HashMap<String, serde_json::Value>>> = Mutex::new(None);

    pub(super) fn register<T: Serialize + Send + Sync>(k: &'static Kept<T>) {
        LIVE.lock().unwrap_or_else(|p| p.into_inner()).push(k);
    }

    pub(super) fn restore<T: DeserializeOwned>(name: &str, place: &str) -> Option<T> {
        let v = HANDED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()?
            .remove(name)?;
        match serde_json::from_value(v) {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!(
                    "[cargo hot] kept `{name}` ({place}): the value saved before the restart no longer fits its type ({e}); initialized anew"
                );
                None
            }
        }
    }

    /// Called before `main`: takes the values the previous run wrote (`HOT_RUNTIME_KEPT`), and
    /// deletes their file.
    pub(crate) fn init() {
        let Some(path) = std::env::var_os("HOT_RUNTIME_KEPT") else {
            return;
        };
        // SAFETY: constructors run before `main`, while the program has only this thread.
        unsafe { std::env::remove_var("HOT_RUNTIME_KEPT") };
        let text = std::fs::read(&path);
        let _ = std::fs::remove_file(&path);
        let map = text
            .ok()
            .and_then(|t| serde_json::from_slice::<HashMap<String, serde_json::Value>>(&t).ok());
        *HANDED.lock().unwrap_or_else(|p| p.into_inner()) = map;
    }

    /// Where to write the values again when the program exits (set by the first `keep`).
    static AT_EXIT: Mutex<Option<std::path::PathBuf>> = Mutex::new(None);

    /// Writes the values now and again when the program exits: cargo hot stops it after this,
    /// and what it does while it stops (requests it finishes) belongs in the next run too.
    pub(crate) fn keep(path: &Path) -> Result<u64, String> {
        let n = save_all(path)?;
        let mut at_exit = AT_EXIT.lock().unwrap_or_else(|p| p.into_inner());
        if at_exit.replace(path.to_path_buf()).is_none() {
            extern "C" fn again() {
                let path = AT_EXIT.lock().ok().and_then(|p| p.clone());
                if let Some(path) = path {
                    let _ = save_all(&path);
                }
            }
            // SAFETY: registering a plain extern "C" fn with atexit(3).
            unsafe { libc::atexit(again) };
        }
        Ok(n)
    }

    /// Writes every initialized kept value to `path` (private, replaced whole); returns how many.
    fn save_all(path: &Path) -> Result<u64, String> {
        let live: Vec<&'static dyn Keep> = LIVE.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // Values handed to this run that it never used go on to the next one as they came.
        let mut map: serde_json::Map<String, serde_json::Value> = HANDED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for k in live {
            let v = k
                .save()
                .map_err(|e| format!("kept `{}` could not be written: {e}", k.name()))?;
            map.insert(k.name().to_string(), v);
        }
        let bytes = serde_json::to_vec(&map).map_err(|e| e.to_string())?;
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        // Written beside, then renamed over: a reader never sees half a file.
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        f.write_all(&bytes)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(map.len() as u64)
    }
}
