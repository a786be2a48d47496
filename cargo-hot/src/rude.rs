//! Rude edits: changes that cannot be patched into a running program because they change the
//! shape of data or the type of a function (like .NET's "rude edits"). Detected from the source
//! before building, by comparing the parsed items of each changed file with the last good
//! snapshot, so the message can name the item.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use quote::ToTokens;

/// The shapes that must not change, per file: item path -> normalized tokens.
#[derive(Default)]
pub struct Snapshot {
    files: HashMap<PathBuf, HashMap<String, String>>,
    /// Text of every file when the snapshot was taken, to notice edits made during a build.
    texts: HashMap<PathBuf, String>,
}

fn is_hot(attrs: &[syn::Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().segments.last().is_some_and(|s| s.ident == "hot"))
}

fn sig_text(sig: &syn::Signature) -> String {
    let mut s = sig.clone();
    // Argument names are not part of the shape.
    for arg in &mut s.inputs {
        if let syn::FnArg::Typed(pt) = arg {
            *pt.pat = syn::parse_quote!(_);
        }
    }
    s.to_token_stream().to_string()
}

fn collect(items: &[syn::Item], prefix: &str, out: &mut HashMap<String, String>) {
    for item in items {
        match item {
            syn::Item::Struct(s) => {
                let mut s = s.clone();
                s.attrs.retain(|a| !a.path().is_ident("doc"));
                out.insert(
                    format!("struct {prefix}{}", s.ident),
                    s.to_token_stream().to_string(),
                );
            }
            syn::Item::Enum(e) => {
                let mut e = e.clone();
                e.attrs.retain(|a| !a.path().is_ident("doc"));
                for v in &mut e.variants {
                    v.attrs.retain(|a| !a.path().is_ident("doc"));
                }
                out.insert(
                    format!("enum {prefix}{}", e.ident),
                    e.to_token_stream().to_string(),
                );
            }
            syn::Item::Union(u) => {
                out.insert(
                    format!("union {prefix}{}", u.ident),
                    u.fields.to_token_stream().to_string(),
                );
            }
            syn::Item::Trait(t) => {
                // Only the declarations: default method bodies may change.
                let decls: Vec<String> = t
                    .items
                    .iter()
                    .map(|i| match i {
                        syn::TraitItem::Fn(f) => sig_text(&f.sig),
                        other => other.to_token_stream().to_string(),
                    })
                    .collect();
                out.insert(format!("trait {prefix}{}", t.ident), decls.join(";"));
            }
            syn::Item::Static(s) => {
                out.insert(
                    format!("static {prefix}{}", s.ident),
                    s.ty.to_token_stream().to_string(),
                );
            }
            syn::Item::Fn(f) if is_hot(&f.attrs) => {
                out.insert(format!("hot fn {prefix}{}", f.sig.ident), sig_text(&f.sig));
            }
            syn::Item::Impl(imp) => {
                let self_ty = imp.self_ty.to_token_stream().to_string().replace(' ', "");
                for ii in &imp.items {
                    if let syn::ImplItem::Fn(f) = ii {
                        if is_hot(&f.attrs) {
                            out.insert(
                                format!("hot fn {prefix}{self_ty}::{}", f.sig.ident),
                                sig_text(&f.sig),
                            );
                        }
                    }
                }
            }
            syn::Item::Mod(m) => {
                if let Some((_, items)) = &m.content {
                    collect(items, &format!("{prefix}{}::", m.ident), out);
                }
            }
            _ => {}
        }
    }
}

/// A function as source names it: (the `impl`'s type, if a method, the fn's name).
pub type FnKey = (Option<String>, String);

/// The body of every fn and method of a file, by [`FnKey`] (in nested modules too).
fn bodies(items: &[syn::Item], out: &mut HashMap<FnKey, String>) {
    let last = |ty: &syn::Type| match ty {
        syn::Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    };
    for item in items {
        match item {
            syn::Item::Fn(f) => {
                let key = (None, f.sig.ident.to_string());
                out.insert(key, f.block.to_token_stream().to_string());
            }
            syn::Item::Impl(i) => {
                for it in &i.items {
                    if let syn::ImplItem::Fn(f) = it {
                        let key = (last(&i.self_ty), f.sig.ident.to_string());
                        out.insert(key, f.block.to_token_stream().to_string());
                    }
                }
            }
            syn::Item::Mod(m) => {
                if let Some((_, items)) = &m.content {
                    bodies(items, out);
                }
            }
            _ => {}
        }
    }
}

fn bodies_of(text: &str) -> HashMap<FnKey, String> {
    let mut out = HashMap::new();
    if let Ok(file) = syn::parse_file(text) {
        bodies(&file.items, &mut out);
    }
    out
}

/// The [`FnKey`] of a demangled function path: `<app::Db>::get` and `<app::P as Tr>::build` are
/// methods of `Db` and `P`; `app::m::main` is `main`.
pub fn fn_key(path: &str) -> FnKey {
    let (ty, name) = match path.strip_prefix('<').and_then(|p| p.rsplit_once(">::")) {
        Some((ty, name)) => (Some(ty.split(" as ").next().unwrap_or(ty)), name),
        None => (None, path.rsplit("::").next().unwrap_or(path)),
    };
    let ty = ty.map(|t| {
        let t = t.split('<').next().unwrap_or(t);
        t.rsplit("::").next().unwrap_or(t).to_string()
    });
    (ty, name.to_string())
}

fn shapes(path: &Path) -> Option<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let file = syn::parse_file(&text).ok()?;
    let mut out = HashMap::new();
    collect(&file.items, "", &mut out);
    Some(out)
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "target" && n != ".git") {
                rs_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

impl Snapshot {
    pub fn take(dirs: &[PathBuf]) -> Snapshot {
        let mut s = Snapshot::default();
        for d in dirs {
            let mut files = Vec::new();
            rs_files(d, &mut files);
            for f in files {
                if let Ok(text) = std::fs::read_to_string(&f) {
                    s.texts.insert(f.clone(), text);
                }
                if let Some(sh) = shapes(&f) {
                    s.files.insert(f, sh);
                }
            }
        }
        s
    }

    /// Why the change of `paths` cannot be patched, if it cannot. A file that does not parse
    /// is not judged here: rustc reports the syntax error and the old code keeps running.
    pub fn check(&self, paths: &[PathBuf]) -> Option<String> {
        for p in paths {
            let Some(new) = shapes(p) else { continue };
            let old = self.files.get(p).cloned().unwrap_or_default();
            let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                match (old.get(k), new.get(k)) {
                    (Some(a), Some(b)) if a != b => {
                        let what = if k.starts_with("hot fn") {
                            "signature of"
                        } else {
                            "definition of"
                        };
                        return Some(format!("the {what} {k} changed in {}", p.display()));
                    }
                    (Some(_), None) if !k.starts_with("hot fn") => {
                        return Some(format!("{k} was removed from {}", p.display()));
                    }
                    _ => {}
                }
            }
        }
        None
    }

    /// Files whose text differs from the snapshot now (edited, created or deleted since).
    pub fn edited_since(&self, dirs: &[PathBuf]) -> Vec<PathBuf> {
        let now = Snapshot::take(dirs);
        let mut changed: Vec<PathBuf> = now
            .texts
            .iter()
            .filter(|(p, t)| self.texts.get(*p) != Some(*t))
            .map(|(p, _)| p.clone())
            .collect();
        changed.extend(
            self.texts
                .keys()
                .filter(|p| !now.texts.contains_key(*p))
                .cloned(),
        );
        changed
    }

    /// The functions whose body text differs between the running code and `paths` now (a
    /// function whose code moved only, e.g. below an added line, is not among them).
    pub fn edited_fns(&self, paths: &[PathBuf]) -> std::collections::HashSet<FnKey> {
        let mut out = std::collections::HashSet::new();
        for p in paths {
            let old = bodies_of(self.texts.get(p).map_or("", String::as_str));
            let new = bodies_of(&std::fs::read_to_string(p).unwrap_or_default());
            out.extend(
                new.into_iter()
                    .filter(|(k, body)| old.get(k) != Some(body))
                    .map(|(k, _)| k),
            );
        }
        out
    }

    /// Records the current content of `paths` as running.
    pub fn update(&mut self, paths: &[PathBuf]) {
        for p in paths {
            match std::fs::read_to_string(p) {
                Ok(text) => {
                    self.texts.insert(p.clone(), text);
                }
                Err(_) => {
                    self.texts.remove(p);
                }
            }
            match shapes(p) {
                Some(sh) => {
                    self.files.insert(p.clone(), sh);
                }
                None => {
                    if !p.exists() {
                        self.files.remove(p);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(before: &str, after: &str) -> Option<String> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("cargo-hot-rude-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("lib.rs");
        std::fs::write(&f, before).unwrap();
        let snap = Snapshot::take(std::slice::from_ref(&dir));
        std::fs::write(&f, after).unwrap();
        let r = snap.check(&[f]);
        std::fs::remove_dir_all(&dir).unwrap();
        r
    }

    #[test]
    fn body_edits_are_not_rude() {
        assert_eq!(
            check("#[hot] fn f() -> u32 { 1 }", "#[hot] fn f() -> u32 { 2 }"),
            None
        );
        assert_eq!(
            check(
                "struct S { a: u32 }\nfn g() {}",
                "/// doc\nstruct S { a: u32 }\nfn g() { let _ = 1; }"
            ),
            None
        );
        assert_eq!(
            check("#[hot] fn f(x: u32) {}", "#[hot] fn f(y: u32) {}"),
            None
        );
        assert_eq!(
            check(
                "trait T { fn a(&self) -> u32 { 1 } }",
                "trait T { fn a(&self) -> u32 { 2 } }"
            ),
            None
        );
    }

    #[test]
    fn shape_edits_are_rude() {
        assert!(
            check("struct S { a: u32 }", "struct S { a: u32, b: u8 }")
                .unwrap()
                .contains("struct S")
        );
        assert!(check("struct S { a: u32, b: u8 }", "struct S { b: u8, a: u32 }").is_some());
        assert!(
            check("enum E { A }", "enum E { A, B }")
                .unwrap()
                .contains("enum E")
        );
        assert!(
            check("static X: u32 = 1;", "static X: u64 = 1;")
                .unwrap()
                .contains("static X")
        );
        assert!(
            check("#[hot] fn f() -> u32 { 1 }", "#[hot] fn f() -> u64 { 1 }")
                .unwrap()
                .contains("signature of hot fn f")
        );
        assert!(
            check(
                "impl S { #[hot] fn m(&self) {} }",
                "impl S { #[hot] fn m(&mut self) {} }"
            )
            .unwrap()
            .contains("S::m")
        );
        assert!(
            check(
                "mod a { pub struct S(u8); }",
                "mod a { pub struct S(u16); }"
            )
            .unwrap()
            .contains("a::S")
        );
    }

    #[test]
    fn static_initializer_change_is_not_rude() {
        assert_eq!(check("static X: u32 = 1;", "static X: u32 = 2;"), None);
    }

    #[test]
    fn functions_are_keyed_as_source_names_them() {
        assert_eq!(fn_key("app::main"), (None, "main".into()));
        assert_eq!(
            fn_key("<app::db::Db>::get"),
            (Some("Db".into()), "get".into())
        );
        assert_eq!(
            fn_key("<app::HotPlugin as bevy_app::plugin::Plugin>::build"),
            (Some("HotPlugin".into()), "build".into())
        );
        assert_eq!(
            fn_key("<app::Wrap<u8>>::new"),
            (Some("Wrap".into()), "new".into())
        );
    }

    #[test]
    fn moved_functions_are_not_edited_ones() {
        let dir = std::env::temp_dir().join(format!("cargo-hot-edited-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("main.rs");
        std::fs::write(
            &f,
            "fn main() { run(); }\nimpl P { fn build(&self) { a(); } }\n",
        )
        .unwrap();
        let snap = Snapshot::take(std::slice::from_ref(&dir));
        std::fs::write(
            &f,
            "// a new line\nfn main() { run(); }\nimpl P { fn build(&self) { a(); b(); } }\n",
        )
        .unwrap();
        let edited = snap.edited_fns(std::slice::from_ref(&f));
        assert_eq!(
            edited,
            std::collections::HashSet::from([(Some("P".to_string()), "build".to_string())])
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn syntax_errors_are_left_to_rustc() {
        assert_eq!(check("fn f() {}", "fn f( {}"), None);
    }
}
