//! The `#[hot]` attribute of cargo hot. Users reach it as `hot_runtime::hot`.
//!
//! The macro emits *two* versions of the function and lets `hot-runtime` pick one with its
//! `__private::select!` macro, whose definition depends on how `hot-runtime` itself was compiled:
//!
//! * **plain** (any ordinary `cargo build`): the item exactly as the user wrote it. Nothing else.
//! * **hot** (built by `cargo hot`): a *dispatcher*. Every hot function owns a slot (one
//!   `AtomicPtr`) and a registry entry in the `hot_runtime_fns` link section. A call loads the
//!   slot; null means "run my own body", otherwise it calls the newer copy the slot points to.
//!
//! Sync functions are their own patch target: a patch contains a recompiled copy of the same
//! function, and the runtime points the host's slot (and the slots of older patches) at it. The
//! patch's copy has its own, patch-local slot, which stays null while it is the newest, so it runs
//! its body. That needs no sibling item, which trait impls would not allow, and never names
//! `Self::f` (which an inherent method of the same name could shadow).
//!
//! `async fn`s cannot be their own target (their opaque future type differs between builds), so
//! the body moves into a non-capturing closure returning a boxed future, and the slot holds that
//! closure's fn pointer.
//!
//! Errors are reported on the user's tokens and the item is still emitted, so IDEs keep working.
//! The macro parses only the signature; the body stays tokens, so a syntax error in it is
//! rustc's alone to report.
//!
//! `#[hot]` always runs after the other attribute macros on its fn (`#[instrument]`, ..): written
//! above them, it re-emits itself below them (see `reorder`), so they rewrite the fn as written,
//! in both builds, and never see the dispatcher.

use proc_macro::TokenStream;
use proc_macro2::{Delimiter, Group, Spacing, Span, TokenStream as TokenStream2, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{
    AttrStyle, Attribute, FnArg, GenericParam, Lifetime, Pat, PatIdent, ReturnType, Signature,
    Token, Type, Visibility, parse_quote,
};

/// Marks a function as hot-patchable. See the `hot-runtime` crate documentation.
#[proc_macro_attribute]
pub fn hot(attr: TokenStream, item: TokenStream) -> TokenStream {
    let attr = TokenStream2::from(attr);
    let item2 = TokenStream2::from(item.clone());
    match expand(attr, item2.clone()) {
        Ok(ts) => ts.into(),
        // Emit the item unchanged next to the error so that IDEs and later errors stay useful.
        Err(err) => {
            let err = err.to_compile_error();
            quote!(#item2 #err).into()
        }
    }
}

/// A function as `#[hot]` receives it: the signature parsed, the body left as tokens.
///
/// Only the signature matters to the expansion; the body is copied, never inspected (except for
/// `self` in an `async fn`, see `replace_self`). So a syntax error in the body is reported once,
/// by rustc, and not also as "this is not a function" (tokio-macros' `entry.rs` and
/// tracing-attributes' `MaybeItemFn` do the same).
struct HotFn {
    attrs: Vec<Attribute>,
    /// The body's inner attributes (`#![allow(..)]`) as outer ones: the expansion moves the
    /// statements into a block where inner attributes are not allowed, so they go on the fn.
    inner_attrs: Vec<Attribute>,
    vis: Visibility,
    sig: Signature,
    /// The body as written (`{ .. }`), for emitting the item unchanged.
    block: Group,
    /// The body's tokens after its inner attributes.
    stmts: TokenStream2,
}

impl Parse for HotFn {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let sig: Signature = input.parse()?;
        let block = match input.parse::<TokenTree>()? {
            TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => g,
            other => return Err(syn::Error::new(other.span(), "expected a function body")),
        };
        if !input.is_empty() {
            return Err(input.error("unexpected tokens after the function body"));
        }
        // Inner attributes (`#![allow(..)]`) at the top of the body. If they do not parse, the
        // body goes on unchanged and rustc reports what is wrong with it.
        let split = |body: ParseStream| -> syn::Result<(Vec<Attribute>, TokenStream2)> {
            Ok((body.call(Attribute::parse_inner)?, body.parse()?))
        };
        let (inner_attrs, stmts) = match split.parse2(block.stream()) {
            Ok((inner, rest)) => {
                let outer = inner.into_iter().map(|mut a| {
                    a.style = AttrStyle::Outer;
                    a
                });
                (outer.collect(), rest)
            }
            Err(_) => (Vec::new(), block.stream()),
        };
        Ok(HotFn {
            attrs,
            inner_attrs,
            vis,
            sig,
            block,
            stmts,
        })
    }
}

struct Args {
    /// `?Send`: the boxed future of an `async fn` is not required to be `Send`.
    not_send: bool,
    /// `rewind`: a running call is re-entered with the new code at the next safe point.
    rewind: bool,
    /// The attribute's tokens, for errors about them (without `__after`).
    tokens: TokenStream2,
    /// Set when this invocation was re-emitted below other attribute macros (see `reorder`):
    /// their names, for errors about the function they produced.
    after: Option<String>,
}

fn parse_args(attr: TokenStream2) -> syn::Result<Args> {
    // The hidden `__after = "..."` that `reorder` appends comes last.
    let tokens: Vec<TokenTree> = attr.clone().into_iter().collect();
    let marker = tokens
        .iter()
        .position(|t| matches!(t, TokenTree::Ident(i) if i == "__after"));
    let (user, after) = match marker {
        Some(at) => {
            let after = match tokens.get(at + 2) {
                Some(TokenTree::Literal(l)) => syn::parse2::<syn::LitStr>(l.to_token_stream())
                    .ok()
                    .map(|s| s.value()),
                _ => None,
            };
            let mut user = &tokens[..at];
            if let Some(TokenTree::Punct(p)) = user.last() {
                if p.as_char() == ',' {
                    user = &user[..user.len() - 1];
                }
            }
            (user.iter().cloned().collect::<TokenStream2>(), after)
        }
        None => (attr, None),
    };
    let mut args = Args {
        not_send: false,
        rewind: false,
        tokens: user.clone(),
        after,
    };
    if user.is_empty() {
        return Ok(args);
    }
    let text = user.to_string().replace(' ', "");
    match text.as_str() {
        "?Send" => args.not_send = true,
        "rewind" => args.rewind = true,
        _ => {
            return Err(syn::Error::new_spanned(
                user,
                "unknown argument to #[hot]: it takes `rewind` (re-enter a running call with the \
                 new code) or `?Send` (for an `async fn` whose future is not Send); write \
                 `#[hot]`, `#[hot(rewind)]` or `#[hot(?Send)]`",
            ));
        }
    }
    Ok(args)
}

fn expand(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let args = parse_args(attr);
    let after = args.as_ref().ok().and_then(|a| a.after.clone());
    let func: HotFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        // A malformed signature: rustc reports it when it parses the item we emit unchanged.
        Err(_)
            if looks_like_fn(&item) && syn::parse2::<syn::TraitItemFn>(item.clone()).is_err() =>
        {
            return Ok(item);
        }
        Err(_) => return Err(not_a_function(item, after.as_deref())),
    };
    let mut errors: Option<syn::Error> = args.as_ref().err().cloned();
    let mut push = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    for e in check_signature(&func.sig) {
        push(e);
    }
    let args = match (errors, args) {
        (Some(e), _) => return Err(with_after(e, after.as_deref())),
        (None, Ok(args)) => args,
        (None, Err(e)) => return Err(e),
    };
    if func.sig.asyncness.is_none() && args.not_send {
        let e = syn::Error::new_spanned(
            &args.tokens,
            "`?Send` only applies to an `async fn`, and this fn is not async; remove `?Send`",
        );
        return Err(with_after(e, after.as_deref()));
    }
    if func.sig.asyncness.is_some() && args.rewind {
        let e = syn::Error::new_spanned(
            &args.tokens,
            "`rewind` applies to a sync fn, and this fn is async: a running future is not \
             re-entered; remove `rewind`, or put the loop in a sync `#[hot(rewind)]` fn",
        );
        return Err(with_after(e, after.as_deref()));
    }
    if let Some(reordered) = reorder(&func, &args)? {
        return Ok(reordered);
    }
    let hot = if func.sig.asyncness.is_some() {
        expand_async(&func, &args)
    } else if args.rewind {
        expand_rewind(&func)
    } else {
        expand_sync(&func)
    };
    // The plain build gets the item exactly as written.
    Ok(quote! {
        ::hot_runtime::__private::select! {
            { #item }
            { #hot }
        }
    })
}

/// Attributes that are not macros, or builtin ones that keep the fn a fn (`#[test]`): they stay
/// on the expansion. Anything else after `#[hot]` may be an attribute macro that rewrites the fn.
fn is_inert(attr: &Attribute) -> bool {
    const BUILTIN: &[&str] = &[
        "allow",
        "warn",
        "deny",
        "forbid",
        "expect",
        "doc",
        "deprecated",
        "must_use",
        "inline",
        "cold",
        "track_caller",
        "no_mangle",
        "export_name",
        "link_section",
        "link_name",
        "used",
        "unsafe",
        "target_feature",
        "instruction_set",
        "optimize",
        "coverage",
        "naked",
        "cfg",
        "test",
        "ignore",
        "should_panic",
        "bench",
        "automatically_derived",
    ];
    const TOOLS: &[&str] = &[
        "rustfmt",
        "clippy",
        "diagnostic",
        "rustdoc",
        "rust_analyzer",
    ];
    let path = attr.path();
    let Some(first) = path.segments.first() else {
        return false;
    };
    let first = first.ident.to_string();
    if path.segments.len() > 1 {
        return TOOLS.contains(&first.as_str());
    }
    if first == "cfg_attr" {
        // Inert when every attribute it may add is.
        let Ok(list) = attr.meta.require_list() else {
            return false;
        };
        let parsed = list.parse_args_with(|input: ParseStream| {
            let _predicate: syn::Meta = input.parse()?;
            let _: Token![,] = input.parse()?;
            Punctuated::<syn::Meta, Token![,]>::parse_terminated(input)
        });
        return match parsed {
            Ok(metas) => metas.iter().all(|m| {
                let a: Attribute = parse_quote!(#[#m]);
                is_inert(&a)
            }),
            Err(_) => false,
        };
    }
    BUILTIN.contains(&first.as_str()) || first.starts_with("rustc_")
}

fn is_hot_attr(attr: &Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|s| s.ident == "hot")
}

/// `#[hot]` must be the last attribute macro to run on its fn, whatever order the user wrote.
///
/// Its hot-mode expansion is a dispatcher whose shape cargo hot relies on (the registry entry in
/// the fn's own body or coroutine, the async entry as its first closure) and whose syntax other
/// macros need not parse: tracing-attributes 0.1.15 parses with syn 1, which stops at the
/// dispatcher's `#[unsafe(link_section = ..)]` with "expected path" and drops the method. And a
/// macro below `#[hot]` would see different code in a plain build (the fn as written) than in a
/// hot one (the dispatcher). So when an attribute after `#[hot]` may be a macro (`#[instrument]`,
/// `#[tokio::main]`, ..), `#[hot]` puts itself back just after the last such attribute and lets
/// them run first, in both builds. `#[hot] #[instrument]` then expands like
/// `#[instrument] #[hot]`: the span code becomes part of the hot body.
fn reorder(func: &HotFn, args: &Args) -> syn::Result<Option<TokenStream2>> {
    if let Some(dup) = func.attrs.iter().find(|a| is_hot_attr(a)) {
        return Err(syn::Error::new_spanned(
            dup,
            "#[hot] is applied twice to this fn; remove one of them",
        ));
    }
    let Some(last) = func.attrs.iter().rposition(|a| !is_inert(a)) else {
        return Ok(None);
    };
    let (before, after) = func.attrs.split_at(last + 1);
    let mut names: Vec<String> = args.after.iter().cloned().collect();
    names.extend(before.iter().filter(|a| !is_inert(a)).map(|a| {
        format!(
            "#[{}]",
            a.path().to_token_stream().to_string().replace(' ', "")
        )
    }));
    let names = names.join(", ");
    let user = &args.tokens;
    let comma = if user.is_empty() { quote!() } else { quote!(,) };
    let vis = &func.vis;
    let sig = &func.sig;
    let block = &func.block;
    Ok(Some(quote! {
        #(#before)*
        #[::hot_runtime::hot(#user #comma __after = #names)]
        #(#after)*
        #vis #sig #block
    }))
}

/// An item that starts like a fn (attributes, visibility and qualifiers, then `fn`).
fn looks_like_fn(item: &TokenStream2) -> bool {
    let mut tokens = item.clone().into_iter().peekable();
    while let Some(tt) = tokens.next() {
        match tt {
            TokenTree::Punct(p) if p.as_char() == '#' => {
                if let Some(TokenTree::Punct(bang)) = tokens.peek() {
                    if bang.as_char() == '!' {
                        tokens.next();
                    }
                }
                tokens.next(); // [..]
            }
            TokenTree::Ident(i) if i == "fn" => return true,
            TokenTree::Ident(i)
                if [
                    "pub", "const", "async", "unsafe", "extern", "default", "safe",
                ]
                .iter()
                .any(|k| i == k) => {}
            TokenTree::Group(g) if g.delimiter() == Delimiter::Parenthesis => {} // pub(crate)
            TokenTree::Literal(_) => {}                                          // extern "C"
            _ => return false,
        }
    }
    false
}

/// Adds to each error that the function it is about came from other attribute macros.
fn with_after(err: syn::Error, after: Option<&str>) -> syn::Error {
    let Some(after) = after else {
        return err;
    };
    let mut out: Option<syn::Error> = None;
    for e in err.clone() {
        let e = syn::Error::new(
            e.span(),
            format!(
                "{e}\n(#[hot] runs after the other attribute macros on this fn, so this is about \
                 the fn that {after} produced, in every build; #[hot] cannot run before them)"
            ),
        );
        match &mut out {
            Some(all) => all.combine(e),
            None => out = Some(e),
        }
    }
    out.unwrap_or(err)
}

fn not_a_function(item: TokenStream2, after: Option<&str>) -> syn::Error {
    let what = match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Struct(_)) => "a struct",
        Ok(syn::Item::Enum(_)) => "an enum",
        Ok(syn::Item::Impl(_)) => "an impl block",
        Ok(syn::Item::Mod(_)) => "a module",
        Ok(syn::Item::Static(_)) => "a static",
        Ok(syn::Item::Const(_)) => "a const",
        Ok(syn::Item::Trait(_)) => "a trait",
        _ => {
            if syn::parse2::<syn::TraitItemFn>(item.clone()).is_ok() {
                return syn::Error::new_spanned(
                    item,
                    "#[hot] needs a function body: put it on the function in the `impl` block, \
                     not on the declaration in the trait",
                );
            }
            "not a function"
        }
    };
    if let Some(after) = after {
        return syn::Error::new(
            Span::call_site(),
            format!(
                "#[hot] can only be applied to functions, and {after} turned this fn into \
                 {what}; #[hot] runs after the other attribute macros on a fn, so it cannot be \
                 combined with {after}"
            ),
        );
    }
    syn::Error::new_spanned(
        item,
        format!(
            "#[hot] can only be applied to functions, and this is {what}: put it on a `fn` item or method"
        ),
    )
}

/// Everything the jump table cannot express yet. Each error points at the offending tokens.
fn check_signature(sig: &Signature) -> Vec<syn::Error> {
    let mut errs = Vec::new();
    if let Some(c) = &sig.constness {
        errs.push(syn::Error::new_spanned(
            c,
            "#[hot] cannot be used on a `const fn`: a const fn may run at compile time, where no \
             patch can reach it; remove `const` or remove #[hot]",
        ));
    }
    if let Some(abi) = &sig.abi {
        errs.push(syn::Error::new_spanned(
            abi,
            "#[hot] cannot be used on an `extern` fn: foreign callers bind to its address directly; \
             keep the extern fn as a thin wrapper and put #[hot] on a Rust fn it calls",
        ));
    }
    if let Some(v) = &sig.variadic {
        errs.push(syn::Error::new_spanned(
            v,
            "#[hot] cannot be used on a variadic fn",
        ));
    }
    // Sync fns dispatch per instantiation (`instance_slot!`); an async fn still has one slot.
    if sig.asyncness.is_some() {
        for p in &sig.generics.params {
            let what = match p {
                GenericParam::Lifetime(_) => continue,
                GenericParam::Type(_) => "type",
                GenericParam::Const(_) => "const",
            };
            errs.push(syn::Error::new_spanned(
                p,
                format!(
                    "#[hot] does not support {what} parameters on an `async fn` yet (a plain `fn` \
                     may have them): make the hot async fn take a concrete type (or `&dyn Trait`) \
                     and call the generic code from it"
                ),
            ));
        }
        for arg in &sig.inputs {
            if let FnArg::Typed(pt) = arg {
                if let Some(span) = find_impl_trait(&pt.ty) {
                    errs.push(syn::Error::new(
                        span,
                        "#[hot] does not support `impl Trait` arguments on an `async fn` yet (a \
                         plain `fn` may have them); take `&dyn Trait` or a concrete type",
                    ));
                }
            }
        }
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        if let Some(span) = find_impl_trait(ty) {
            errs.push(syn::Error::new(
                span,
                "#[hot] does not support `impl Trait` in return position: a patch could return a \
                 different hidden type; return a concrete type or `Box<dyn Trait>`",
            ));
        }
    }
    errs
}

fn find_impl_trait(ty: &Type) -> Option<Span> {
    struct Finder(Option<Span>);
    impl<'ast> syn::visit::Visit<'ast> for Finder {
        fn visit_type_impl_trait(&mut self, t: &'ast syn::TypeImplTrait) {
            self.0.get_or_insert(t.span());
        }
    }
    let mut f = Finder(None);
    syn::visit::Visit::visit_type(&mut f, ty);
    f.0
}

fn mentions_self(tokens: TokenStream2) -> bool {
    tokens.into_iter().any(|tt| match tt {
        TokenTree::Ident(i) => i == "Self",
        TokenTree::Group(g) => mentions_self(g.stream()),
        _ => false,
    })
}

/// FNV-1a: stable across compiler versions, unlike `DefaultHasher`.
fn fnv1a(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What the body sees as arguments, and how the dispatcher forwards them.
struct Lowered {
    /// The signature of the dispatcher: the user's, with destructuring patterns replaced by
    /// `__hot_argN` (they are re-bound in the body, see `rebinds`).
    sig: Signature,
    /// `let <pattern> = __hot_argN;` for each destructuring pattern.
    rebinds: Vec<TokenStream2>,
    /// Expressions passed to the newer copy, in order (receiver first).
    call_args: Vec<TokenStream2>,
    /// Types of the fn pointer the slot holds, in order (receiver first).
    ptr_inputs: Vec<Type>,
    /// Argument types whose layout goes into the fingerprint (no receiver, no `Self`).
    layout_types: Vec<Type>,
    /// Normalized text of the signature without names, hashed into the fingerprint.
    shape: String,
}

fn lower(sig: &Signature) -> Lowered {
    let mut sig_out = sig.clone();
    let mut rebinds = Vec::new();
    let mut call_args = Vec::new();
    let mut ptr_inputs = Vec::new();
    let mut layout_types = Vec::new();
    let mut shape = String::new();
    if sig.unsafety.is_some() {
        shape.push_str("unsafe ");
    }
    if sig.asyncness.is_some() {
        shape.push_str("async ");
    }
    shape.push_str("fn");
    shape.push_str(&sig.generics.to_token_stream().to_string());
    if let Some(w) = &sig.generics.where_clause {
        shape.push_str(&w.to_token_stream().to_string());
    }
    shape.push('(');
    for (i, arg) in sig_out.inputs.iter_mut().enumerate() {
        match arg {
            FnArg::Receiver(r) => {
                call_args.push(quote!(self));
                ptr_inputs.push((*r.ty).clone());
                shape.push_str(&r.ty.to_token_stream().to_string());
            }
            FnArg::Typed(pt) => {
                let ty = (*pt.ty).clone();
                shape.push_str(&ty.to_token_stream().to_string());
                if !mentions_self(ty.to_token_stream()) {
                    layout_types.push(ty.clone());
                }
                ptr_inputs.push(ty);
                match &*pt.pat {
                    Pat::Ident(PatIdent {
                        ident,
                        by_ref: None,
                        subpat: None,
                        ..
                    }) => {
                        call_args.push(ident.to_token_stream());
                    }
                    other => {
                        let name = format_ident!("__hot_arg{}", i);
                        let pat = other.clone();
                        rebinds.push(quote!(let #pat = #name;));
                        call_args.push(name.to_token_stream());
                        *pt.pat = parse_quote!(#name);
                    }
                }
            }
        }
        shape.push(',');
    }
    shape.push(')');
    if let ReturnType::Type(_, ty) = &sig.output {
        shape.push_str(" -> ");
        shape.push_str(&ty.to_token_stream().to_string());
    }
    Lowered {
        sig: sig_out,
        rebinds,
        call_args,
        ptr_inputs,
        layout_types,
        shape,
    }
}

/// Named lifetimes of the outer fn are not in scope inside the nested statics: turn them into
/// `'_`, which in expression position (`Layout::new::<T>()`) is just inferred.
struct EraseLifetimes;
impl VisitMut for EraseLifetimes {
    fn visit_lifetime_mut(&mut self, l: &mut Lifetime) {
        if l.ident != "static" {
            *l = Lifetime::new("'_", l.span());
        }
    }
}

fn layout_list(types: &[Type], output: &ReturnType) -> Vec<TokenStream2> {
    let mut all: Vec<Type> = types.to_vec();
    if let ReturnType::Type(_, ty) = output {
        let never = matches!(**ty, Type::Never(_));
        if !never && !mentions_self(ty.to_token_stream()) {
            all.push((**ty).clone());
        }
    }
    all.into_iter()
        .map(|mut t| {
            EraseLifetimes.visit_type_mut(&mut t);
            quote!(::core::alloc::Layout::new::<#t>())
        })
        .collect()
}

/// The fn pointer type a slot holds, with the lifetimes the user elided named explicitly.
///
/// A fn pointer type does not know the method elision rule (`&self` lends its lifetime to an
/// elided output lifetime), so `fn(&Self, &str) -> &T` would not compile. Each elided input
/// lifetime gets a fresh name bound by `for<..>`, and elided output lifetimes get the one the
/// elision rules pick: the receiver's, else the only input lifetime. Named lifetimes stay as
/// they are (they are in scope inside the function), except as `ptr_sig`'s `bind_named` says.
struct PtrSig {
    /// Fresh lifetimes to bind with `for<..>`.
    bound: Vec<Lifetime>,
    inputs: Vec<Type>,
    output: ReturnType,
}

struct NameElided {
    bound: Vec<Lifetime>,
}
impl NameElided {
    fn fresh(&mut self, span: Span) -> Lifetime {
        let l = Lifetime::new(&format!("'__hot_l{}", self.bound.len()), span);
        self.bound.push(l.clone());
        l
    }
}
impl VisitMut for NameElided {
    fn visit_lifetime_mut(&mut self, l: &mut Lifetime) {
        if l.ident == "_" {
            *l = self.fresh(l.span());
        }
    }
    fn visit_type_reference_mut(&mut self, r: &mut syn::TypeReference) {
        if r.lifetime.is_none() {
            r.lifetime = Some(self.fresh(r.and_token.span));
        }
        syn::visit_mut::visit_type_reference_mut(self, r);
    }
    // `fn(&T)` and `Fn(&T)` have their own elision scope.
    fn visit_type_bare_fn_mut(&mut self, _: &mut syn::TypeBareFn) {}
    fn visit_parenthesized_generic_arguments_mut(
        &mut self,
        _: &mut syn::ParenthesizedGenericArguments,
    ) {
    }
}

/// Lifetimes written in a type, outside nested `fn(..)` / `Fn(..)` elision scopes.
fn lifetimes_in(ty: &Type) -> Vec<Lifetime> {
    struct Collect(Vec<Lifetime>);
    impl<'ast> syn::visit::Visit<'ast> for Collect {
        fn visit_lifetime(&mut self, l: &'ast Lifetime) {
            self.0.push(l.clone());
        }
        fn visit_type_bare_fn(&mut self, _: &'ast syn::TypeBareFn) {}
        fn visit_parenthesized_generic_arguments(
            &mut self,
            _: &'ast syn::ParenthesizedGenericArguments,
        ) {
        }
    }
    let mut c = Collect(Vec::new());
    syn::visit::Visit::visit_type(&mut c, ty);
    c.0
}

struct FillElided(Lifetime);
impl VisitMut for FillElided {
    fn visit_lifetime_mut(&mut self, l: &mut Lifetime) {
        if l.ident == "_" {
            *l = self.0.clone();
        }
    }
    fn visit_type_reference_mut(&mut self, r: &mut syn::TypeReference) {
        if r.lifetime.is_none() {
            r.lifetime = Some(self.0.clone());
        }
        syn::visit_mut::visit_type_reference_mut(self, r);
    }
    fn visit_type_bare_fn_mut(&mut self, _: &mut syn::TypeBareFn) {}
    fn visit_parenthesized_generic_arguments_mut(
        &mut self,
        _: &mut syn::ParenthesizedGenericArguments,
    ) {
    }
}

/// Renames lifetimes (by ident) everywhere in a type.
struct RenameLifetimes(Vec<(proc_macro2::Ident, Lifetime)>);
impl VisitMut for RenameLifetimes {
    fn visit_lifetime_mut(&mut self, l: &mut Lifetime) {
        if let Some((_, to)) = self.0.iter().find(|(from, _)| *from == l.ident) {
            *l = Lifetime::new(&to.to_string(), l.span());
        }
    }
}

/// The fn's own late-bound lifetimes: declared on the fn, without bounds, not named in the
/// `where` clause, used by an argument. (Early-bound ones may appear free in a closure inside
/// the fn; late-bound ones must be bound by the closure's own `for<..>`.)
fn late_bound_lifetimes(sig: &Signature) -> Vec<proc_macro2::Ident> {
    struct Collect(Vec<proc_macro2::Ident>);
    impl<'ast> syn::visit::Visit<'ast> for Collect {
        fn visit_lifetime(&mut self, l: &'ast Lifetime) {
            self.0.push(l.ident.clone());
        }
    }
    let mut early = Collect(Vec::new());
    for p in &sig.generics.params {
        if let GenericParam::Lifetime(lp) = p {
            if !lp.bounds.is_empty() {
                syn::visit::Visit::visit_lifetime_param(&mut early, lp);
            }
        }
    }
    if let Some(w) = &sig.generics.where_clause {
        syn::visit::Visit::visit_where_clause(&mut early, w);
    }
    let mut used = Collect(Vec::new());
    for arg in &sig.inputs {
        syn::visit::Visit::visit_fn_arg(&mut used, arg);
    }
    sig.generics
        .lifetimes()
        .map(|lp| lp.lifetime.ident.clone())
        .filter(|id| !early.0.contains(id) && used.0.contains(id))
        .collect()
}

/// `bind_named`: also bind the fn's own late-bound lifetimes with `for<..>` (needed when the
/// fn pointer is the type of a closure inside the fn, as for `async fn`).
fn ptr_sig(sig: &Signature, low: &Lowered, bind_named: bool) -> PtrSig {
    let mut namer = NameElided { bound: Vec::new() };
    let mut inputs = low.ptr_inputs.clone();
    let mut output = sig.output.clone();
    if bind_named {
        let renames: Vec<(proc_macro2::Ident, Lifetime)> = late_bound_lifetimes(sig)
            .into_iter()
            .map(|id| {
                let to = Lifetime::new(&format!("'__hot_n_{id}"), id.span());
                (id, to)
            })
            .collect();
        let mut rename = RenameLifetimes(renames);
        for t in &mut inputs {
            rename.visit_type_mut(t);
        }
        rename.visit_return_type_mut(&mut output);
        namer.bound.extend(rename.0.into_iter().map(|(_, to)| to));
    }
    for t in &mut inputs {
        namer.visit_type_mut(t);
    }
    let has_receiver = matches!(sig.inputs.first(), Some(FnArg::Receiver(_)));
    let receiver_lt = if has_receiver {
        lifetimes_in(&inputs[0]).into_iter().next()
    } else {
        None
    };
    let target = receiver_lt.or_else(|| {
        let all: Vec<Lifetime> = inputs.iter().flat_map(lifetimes_in).collect();
        if all.len() == 1 {
            all.into_iter().next()
        } else {
            None
        }
    });
    if let (Some(target), ReturnType::Type(_, ty)) = (target, &mut output) {
        FillElided(target).visit_type_mut(ty);
    }
    PtrSig {
        bound: namer.bound,
        inputs,
        output,
    }
}

/// The slot and the registry entry shared by both expansions.
///
/// An async fn's fingerprint has its argument layouts; a sync fn's has its signature only, since
/// its statics are shared by every instantiation: each copy carries its own layouts (see
/// `instance_layouts`).
fn slot_and_entry(func: &HotFn, low: &Lowered, kind: TokenStream2) -> TokenStream2 {
    let name = func.sig.ident.to_string();
    let hash = fnv1a(&low.shape);
    let layouts = if func.sig.asyncness.is_some() {
        layout_list(&low.layout_types, &func.sig.output)
    } else {
        Vec::new()
    };
    let span = Span::mixed_site();
    quote_spanned! {span=>
        // Names and section: `hot_runtime::protocol` (SLOT_STATIC, ENTRY_STATIC, REGISTRY_SECTION).
        static __HOT_SLOT: ::hot_runtime::__private::Slot = ::hot_runtime::__private::Slot::new();
        #[used]
        #[unsafe(link_section = "hot_runtime_fns")]
        static __HOT_ENTRY: ::hot_runtime::__private::Entry = ::hot_runtime::__private::Entry::new(
            ::hot_runtime::__private::fingerprint(#hash, &[#(#layouts),*]),
            #kind,
            &__HOT_SLOT,
            ::core::concat!(::core::module_path!(), "::", #name),
            ::core::file!(),
            ::core::line!(),
        );
    }
}

/// `impl Trait` replaced by `_`: a fn pointer type cannot say `impl Trait`, and inference
/// finds the instantiation's type from the call.
struct InferImplTrait;
impl VisitMut for InferImplTrait {
    fn visit_type_mut(&mut self, t: &mut Type) {
        if matches!(t, Type::ImplTrait(_)) {
            *t = parse_quote!(_);
        } else {
            syn::visit_mut::visit_type_mut(self, t);
        }
    }
}

/// A type with the same layout that names no lifetime the path of a `sym` operand cannot hold:
/// top-level references become raw pointers (no `T: 'a` bound to prove), other lifetimes `'_`.
/// `None` for types whose layout is not this copy's to check (`impl Trait`, `!`).
fn layout_type(ty: &Type) -> Option<Type> {
    if find_impl_trait(ty).is_some() || matches!(ty, Type::Never(_)) {
        return None;
    }
    match ty {
        Type::Reference(r) => {
            let inner = layout_type(&r.elem)?;
            Some(if r.mutability.is_some() {
                parse_quote!(*mut #inner)
            } else {
                parse_quote!(*const #inner)
            })
        }
        Type::Paren(p) => layout_type(&p.elem),
        other => {
            let mut t = other.clone();
            EraseLifetimes.visit_type_mut(&mut t);
            Some(t)
        }
    }
}

/// `L<Arg1, L<Arg2, .. ()>>`: the types whose layouts (receiver first, then the return value)
/// this copy's instance record hashes, per instantiation.
fn instance_layouts(low: &Lowered, output: &ReturnType) -> TokenStream2 {
    let mut types: Vec<Type> = low.ptr_inputs.iter().filter_map(layout_type).collect();
    if let ReturnType::Type(_, ty) = output {
        types.extend(layout_type(ty));
    }
    let mut list = quote!(());
    for t in types.iter().rev() {
        list = quote!(::hot_runtime::__private::L<#t, #list>);
    }
    list
}

fn expand_sync(func: &HotFn) -> TokenStream2 {
    let low = lower(&func.sig);
    let attrs = func.attrs.iter().chain(&func.inner_attrs);
    let vis = &func.vis;
    let sig = &low.sig;
    let stmts = &func.stmts;
    let rebinds = &low.rebinds;
    let call_args = &low.call_args;
    let mut ptr = ptr_sig(&func.sig, &low, false);
    for t in &mut ptr.inputs {
        InferImplTrait.visit_type_mut(t);
    }
    let inputs = &ptr.inputs;
    let output = &ptr.output;
    let layouts = instance_layouts(&low, &func.sig.output);
    let binder = if ptr.bound.is_empty() {
        quote!()
    } else {
        let bound = &ptr.bound;
        quote!(for<#(#bound),*>)
    };
    let unsafety = &func.sig.unsafety;
    let statics = slot_and_entry(func, &low, quote!(::hot_runtime::__private::KIND_SYNC));
    // The hot copy is never inlined: an optimized build would otherwise copy the body into its
    // callers (where a patch cannot reach it) and may drop the function the patch rebinds.
    // The user's own `#[inline]` stays on the plain copy.
    let attrs = attrs.filter(|a| !a.path().is_ident("inline"));
    quote! {
        #(#attrs)*
        #[inline(never)]
        #[allow(unused_mut, clippy::all)]
        #vis #sig {
            #statics
            ::hot_runtime::__private::safe_point();
            // This compiled copy's own slot (each instantiation of a generic fn has one).
            let __hot_target = ::hot_runtime::__private::instance_slot!(__HOT_ENTRY, #layouts);
            if __hot_target.is_null() {
                // The body's statements, not its block: `{ { x + 1 } }` would trip `unused_braces`
                // on the user's one-line fns.
                #(#rebinds)*
                #stmts
            } else {
                // SAFETY: the runtime only stores the address of a newer copy of this very
                // function, whose fingerprint (signature and argument layouts) it checked.
                #[allow(unused_unsafe, clippy::missing_transmute_annotations)]
                let __hot_next = unsafe {
                    ::core::mem::transmute::<*const (), #binder #unsafety fn(#(#inputs),*) #output>(__hot_target)
                };
                #[allow(unused_unsafe)]
                unsafe { __hot_next(#(#call_args),*) }
            }
        }
    }
}

/// The body of a hot fn moved into a non-capturing closure (an async fn's entry, a rewind fn's
/// body): the closure's parameters (the receiver as `__hot_self`, `mut` kept), the destructuring
/// `let`s and the body, with `self` replaced, and `unsafe` when the fn is.
struct ClosureParts {
    params: Vec<TokenStream2>,
    rebinds: Vec<TokenStream2>,
    body: TokenStream2,
    call_unsafe: TokenStream2,
    /// The declared return type (`()` when none), named lifetimes as `'_`, for a typed `let`
    /// of the body's value inside the closure.
    declared_ret: Type,
}

fn closure_parts(func: &HotFn, low: &Lowered, self_ident: &proc_macro2::Ident) -> ClosureParts {
    let params = low
        .sig
        .inputs
        .iter()
        .zip(&low.call_args)
        .map(|(arg, name)| match arg {
            FnArg::Receiver(r) if r.reference.is_none() && r.mutability.is_some() => {
                quote!(mut #self_ident)
            }
            FnArg::Receiver(_) => self_ident.to_token_stream(),
            FnArg::Typed(pt) => match &*pt.pat {
                Pat::Ident(PatIdent {
                    mutability: Some(m),
                    ..
                }) => quote!(#m #name),
                _ => name.clone(),
            },
        })
        .collect();
    let mut body = Group::new(Delimiter::Brace, func.stmts.clone());
    body.set_span(func.block.span());
    let mut declared_ret = match &func.sig.output {
        ReturnType::Default => parse_quote!(()),
        ReturnType::Type(_, t) => (**t).clone(),
    };
    EraseLifetimes.visit_type_mut(&mut declared_ret);
    ClosureParts {
        declared_ret,
        params,
        rebinds: low
            .rebinds
            .iter()
            .map(|r| replace_self(r.clone(), self_ident, false))
            .collect(),
        body: replace_self(body.into_token_stream(), self_ident, false),
        call_unsafe: if func.sig.unsafety.is_some() {
            quote!(unsafe)
        } else {
            quote!()
        },
    }
}

/// `#[hot(rewind)]`: the body runs in a non-capturing closure inside a `Frame`; when a safe point
/// inside it rewinds the frame (a patch replaced this fn's code), the dispatcher calls the fn
/// again, with the same arguments, through its slot. Every argument must be a reference
/// (reborrowed for each call) or `Copy`; the check is on the user's tokens.
fn expand_rewind(func: &HotFn) -> TokenStream2 {
    let low = lower(&func.sig);
    let attrs = func.attrs.iter().chain(&func.inner_attrs);
    let attrs = attrs.filter(|a| !a.path().is_ident("inline"));
    let vis = &func.vis;
    let sig = &low.sig;
    let call_args = &low.call_args;
    let unsafety = &func.sig.unsafety;
    let self_ident = format_ident!("__hot_self");
    let infer = |mut p: PtrSig| {
        for t in &mut p.inputs {
            InferImplTrait.visit_type_mut(t);
        }
        p
    };
    // The forwarding call (as `expand_sync`) and the body closure (as `expand_async`'s entry).
    let fwd = infer(ptr_sig(&func.sig, &low, false));
    let body_ptr = infer(ptr_sig(&func.sig, &low, true));
    let binder = |p: &PtrSig| {
        let bound = &p.bound;
        if bound.is_empty() {
            quote!()
        } else {
            quote!(for<#(#bound),*>)
        }
    };
    let (fwd_binder, fwd_inputs, fwd_output) = (binder(&fwd), &fwd.inputs, &fwd.output);
    let (body_binder, body_inputs, body_output) =
        (binder(&body_ptr), &body_ptr.inputs, &body_ptr.output);
    let layouts = instance_layouts(&low, &func.sig.output);
    let ClosureParts {
        params,
        rebinds: rebinds_in,
        body,
        call_unsafe,
        declared_ret,
    } = closure_parts(func, &low, &self_ident);
    let mut again = Vec::new();
    let mut checks = Vec::new();
    for (arg, name) in low.sig.inputs.iter().zip(&low.call_args) {
        let (ty, by_value): (&Type, TokenStream2) = match arg {
            FnArg::Receiver(r) => (&r.ty, quote!(self)),
            FnArg::Typed(pt) => (&pt.ty, name.clone()),
        };
        match ty {
            Type::Reference(r) if r.mutability.is_some() => again.push(quote!(&mut *#by_value)),
            Type::Reference(_) => again.push(by_value),
            other => {
                checks.push(quote_spanned! {other.span()=>
                    ::hot_runtime::__private::rewind_arg(&#by_value);
                });
                again.push(by_value);
            }
        }
    }
    let statics = slot_and_entry(func, &low, quote!(::hot_runtime::__private::KIND_SYNC));
    // `!` may only be written as a return type on stable: a fn that never returns gets no typed
    // `let` for its value, and its frame's run yields `()`.
    let never = matches!(&func.sig.output, ReturnType::Type(_, t) if matches!(**t, Type::Never(_)));
    let closure_body = if never {
        quote!({ #(#rebinds_in)* #body })
    } else {
        quote!({
            #(#rebinds_in)*
            let __hot_ret: #declared_ret = #body;
            #[allow(unreachable_code)]
            __hot_ret
        })
    };
    let run = if never {
        quote! {
            #[allow(unreachable_code, unused_unsafe)]
            let _ = __hot_frame.run(|| { #call_unsafe { __hot_body(#(#again),*) }; });
        }
    } else {
        quote! {
            #[allow(unused_unsafe)]
            if let ::core::option::Option::Some(__hot_ret) =
                __hot_frame.run(|| #call_unsafe { __hot_body(#(#again),*) })
            {
                return __hot_ret;
            }
        }
    };
    quote! {
        #(#attrs)*
        #[inline(never)]
        #[allow(unused_mut, clippy::all)]
        #vis #sig {
            #statics
            #[cfg(panic = "abort")]
            ::core::compile_error!(
                "#[hot(rewind)] unwinds the running call, and this build aborts on panic: \
                 build with `panic = \"unwind\"` or remove `rewind`"
            );
            ::hot_runtime::__private::safe_point();
            #(#checks)*
            let __hot_body: #body_binder #unsafety fn(#(#body_inputs),*) #body_output =
                |#(#params),*| #closure_body;
            loop {
                let __hot_target = ::hot_runtime::__private::instance_slot!(__HOT_ENTRY, #layouts);
                #[allow(unreachable_code)]
                if !__hot_target.is_null() {
                    // SAFETY: the runtime only stores the address of a newer copy of this very
                    // function, whose fingerprint (signature and argument layouts) it checked.
                    #[allow(unused_unsafe, clippy::missing_transmute_annotations)]
                    let __hot_next = unsafe {
                        ::core::mem::transmute::<*const (), #fwd_binder #unsafety fn(#(#fwd_inputs),*) #fwd_output>(__hot_target)
                    };
                    #[allow(unused_unsafe)]
                    return unsafe { __hot_next(#(#call_args),*) };
                }
                let mut __hot_frame = ::hot_runtime::__private::Frame::enter(&__HOT_ENTRY);
                #run
            }
        }
    }
}

/// Replaces the `self` keyword in a body by `replacement`, except in paths (`self::x`), inside
/// nested items that have their own `self` (fn, impl, trait, macro_rules), and where it names a
/// field of a macro call (`info!(self = ?self)`, and the `span!` that `#[instrument]` writes for
/// a recorded receiver): there it stays, so that the field is called `self` in both builds.
/// `macro_args`: `ts` is the argument list of a macro call (`name!(..)`).
fn replace_self(
    ts: TokenStream2,
    replacement: &proc_macro2::Ident,
    macro_args: bool,
) -> TokenStream2 {
    let tokens: Vec<TokenTree> = ts.into_iter().collect();
    let mut out = Vec::with_capacity(tokens.len());
    let mut skip_next_brace = false;
    let mut skip_next_paren = false;
    let mut i = 0;
    while i < tokens.len() {
        let tt = &tokens[i];
        match tt {
            TokenTree::Ident(id) if id == "self" => {
                let is_path =
                    matches!(tokens.get(i + 1), Some(TokenTree::Punct(p)) if p.as_char() == ':');
                // `, self = value` at the top of a macro call: a field name (a lone `=`, not
                // `==` or `=>`).
                let is_field_name = macro_args
                    && (i == 0
                        || matches!(&tokens[i - 1], TokenTree::Punct(p) if p.as_char() == ','))
                    && matches!(tokens.get(i + 1), Some(TokenTree::Punct(p))
                        if p.as_char() == '=' && p.spacing() == Spacing::Alone);
                if is_path || is_field_name {
                    out.push(tt.clone());
                } else {
                    let mut r = replacement.clone();
                    r.set_span(id.span());
                    out.push(TokenTree::Ident(r));
                }
            }
            TokenTree::Ident(id) if id == "impl" || id == "trait" || id == "macro_rules" => {
                skip_next_brace = true;
                out.push(tt.clone());
            }
            TokenTree::Ident(id) if id == "fn" => {
                // `fn name(..) {..}` is a nested item; `fn(..)` is a type.
                if matches!(tokens.get(i + 1), Some(TokenTree::Ident(_))) {
                    skip_next_brace = true;
                    skip_next_paren = true;
                }
                out.push(tt.clone());
            }
            TokenTree::Group(g) => {
                let delim = g.delimiter();
                let keep = (delim == proc_macro2::Delimiter::Brace && skip_next_brace)
                    || (delim == proc_macro2::Delimiter::Parenthesis && skip_next_paren);
                if delim == proc_macro2::Delimiter::Parenthesis {
                    skip_next_paren = false;
                }
                if delim == proc_macro2::Delimiter::Brace {
                    skip_next_brace = false;
                }
                let is_macro_call = i >= 2
                    && matches!(&tokens[i - 1], TokenTree::Punct(p) if p.as_char() == '!')
                    && matches!(&tokens[i - 2], TokenTree::Ident(_));
                if keep {
                    out.push(tt.clone());
                } else {
                    let mut ng = proc_macro2::Group::new(
                        delim,
                        replace_self(g.stream(), replacement, is_macro_call),
                    );
                    ng.set_span(g.span());
                    out.push(TokenTree::Group(ng));
                }
            }
            _ => out.push(tt.clone()),
        }
        i += 1;
    }
    out.into_iter().collect()
}

fn expand_async(func: &HotFn, args: &Args) -> TokenStream2 {
    let low = lower(&func.sig);
    let attrs = func.attrs.iter().chain(&func.inner_attrs);
    let vis = &func.vis;
    let sig = &low.sig;
    let call_args = &low.call_args;
    let unsafety = &func.sig.unsafety;
    let self_ident = format_ident!("__hot_self");

    // The boxed future borrows every argument, so it lives for `'__hot`, which all argument
    // types outlive: the leading `PhantomData<&'__hot (..inputs..)>` parameter (a ZST, passed
    // first) makes that an implied bound of the closure. It also keeps `'__hot` constrained by
    // the inputs when no argument borrows anything.
    let ptr = ptr_sig(&func.sig, &low, true);
    let inputs = &ptr.inputs;
    let bound = &ptr.bound;
    let ret: Type = match &ptr.output {
        ReturnType::Default => parse_quote!(()),
        ReturnType::Type(_, t) => (**t).clone(),
    };
    let send = if args.not_send {
        quote!()
    } else {
        quote!(+ ::core::marker::Send)
    };
    let fut = quote! {
        ::core::pin::Pin<::std::boxed::Box<dyn ::core::future::Future<Output = #ret> #send + '__hot>>
    };
    let phantom = quote!(::core::marker::PhantomData<&'__hot (#(#inputs,)*)>);
    let entry_ty = quote!(for<'__hot #(, #bound)*> #unsafety fn(#phantom #(, #inputs)*) -> #fut);

    // Closure parameters: the receiver renamed, the rest as the dispatcher names them, `mut`
    // kept (the body may assign to them).
    let ClosureParts {
        params,
        rebinds: rebinds_in,
        body,
        call_unsafe,
        declared_ret,
    } = closure_parts(func, &low, &self_ident);
    let statics = slot_and_entry(func, &low, quote!(::hot_runtime::__private::KIND_ASYNC));
    quote! {
        #(#attrs)*
        #[allow(unused_mut, clippy::all)]
        #vis #sig {
            // The patch target: the body in a non-capturing closure returning a boxed future.
            // It must stay the first closure of this fn: cargo hot finds it by that name.
            let __hot_entry: #entry_ty = |_ #(, #params)*| {
                ::std::boxed::Box::pin(async move {
                    #(#rebinds_in)*
                    let __hot_ret: #declared_ret = #body;
                    #[allow(unreachable_code)]
                    __hot_ret
                })
            };
            #statics
            ::hot_runtime::__private::safe_point();
            let __hot_target = __HOT_SLOT.get();
            let __hot_next = if __hot_target.is_null() {
                __hot_entry
            } else {
                // SAFETY: the runtime only stores the entry of a newer copy of this very
                // function, whose fingerprint it checked.
                #[allow(clippy::missing_transmute_annotations)]
                unsafe { ::core::mem::transmute::<*const (), #entry_ty>(__hot_target) }
            };
            #call_unsafe { __hot_next(::core::marker::PhantomData #(, #call_args)*) }.await
        }
    }
}
