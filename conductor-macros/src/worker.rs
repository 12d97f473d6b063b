//! `#[conductor::worker(type = "...")]`: registers a function or a
//! `JobWorker` impl under a worker type name.

use crate::parse::WorkerArgs;
use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    Error, FnArg, Ident, Item, ItemFn, ItemImpl, LitStr, Pat, PatType, Result, ReturnType, Type,
};

/// Shown for any item kind the attribute does not understand.
const WRONG_ITEM: &str = "#[conductor::worker] goes on a `fn`, an `async fn`, \
                          or an `impl conductor::JobWorker for T` block";

/// The two accepted signatures, quoted in several errors.
const FN_FORMS: &str = "`fn name(job: Job) -> Result<Output, Error>` or \
                        `fn name(job: Job, worker: &conductor::Worker) -> Result<Output, Error>`";

/// Expands `#[conductor::worker(args)] item`.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = syn::parse2::<WorkerArgs>(args);
    let parsed = syn::parse2::<Item>(item.clone());
    let target = parsed
        .as_ref()
        .map_err(Clone::clone)
        .and_then(Target::from_item);

    let generated = match (args, target) {
        (Ok(args), Ok(target)) => {
            let generated = target.expand(&args);
            return quote!(#item #generated);
        }
        (Ok(_), Err(err)) => err.to_compile_error(),
        (Err(mut err), Err(item_err)) => {
            // Both mistakes are independent, so report both in one go.
            err.combine(item_err);
            err.to_compile_error()
        }
        (Err(err), Ok(Target::Fn(_))) => err.to_compile_error(),
        (Err(err), Ok(Target::Impl(worker))) => {
            // Code elsewhere may rely on `T: NamedWorker`; keep it satisfied
            // so the only error is the one about the attribute.
            let named = worker.named_worker_impl(&LitStr::new("", Span::call_site()));
            let err = err.to_compile_error();
            quote!(#err #named)
        }
    };

    match parsed {
        // Without its registration the item may look unused; that warning
        // would only be noise next to the real error.
        Ok(_) => quote!(#[allow(dead_code)] #item #generated),
        Err(_) => quote!(#item #generated),
    }
}

/// What the attribute was put on, reduced to what the expansion needs.
// One short-lived value per macro call; boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Target {
    Fn(FnWorker),
    Impl(ImplWorker),
}

impl Target {
    fn from_item(item: &Item) -> Result<Self> {
        match item {
            Item::Fn(func) => FnWorker::from_fn(func).map(Target::Fn),
            Item::Impl(imp) => ImplWorker::from_impl(imp).map(Target::Impl),
            other => Err(Error::new_spanned(item_head(other), WRONG_ITEM)),
        }
    }

    /// The type name when the attribute gives none: the function's name, or the
    /// last segment of the impl's type.
    fn default_name(&self) -> LitStr {
        let ident = match self {
            Target::Fn(worker) => Some(&worker.ident),
            Target::Impl(worker) => match &worker.self_ty {
                Type::Path(path) => path.path.segments.last().map(|s| &s.ident),
                _ => None,
            },
        };
        match ident {
            Some(ident) => LitStr::new(&ident.unraw().to_string(), ident.span()),
            None => LitStr::new("", Span::call_site()),
        }
    }

    fn expand(&self, args: &WorkerArgs) -> TokenStream {
        let type_name = args
            .type_name
            .clone()
            .unwrap_or_else(|| self.default_name());
        let guard = duplicate_guard(&type_name);
        let body = match (self, &args.init) {
            (Target::Fn(worker), init) => worker.expand(&type_name, init.as_ref()),
            (Target::Impl(worker), None) => worker.expand(&type_name),
            (Target::Impl(worker), Some(init)) => {
                // Keep `T: NamedWorker` satisfied so this is the only error.
                let named = worker.named_worker_impl(&type_name);
                let err = Error::new_spanned(
                    init,
                    "`init` is for function workers; a `JobWorker` impl does its \
                     set-up in `JobWorker::init`",
                )
                .to_compile_error();
                quote!(#err #named)
            }
        };
        quote!(#guard #body)
    }
}

/// A free `fn` / `async fn` worker.
struct FnWorker {
    ident: Ident,
    vis: syn::Visibility,
    is_async: bool,
    job_ty: Type,
    /// The span of the second parameter's type, if there is one, so a wrong
    /// type there is reported on the user's signature.
    worker_ty_span: Option<Span>,
    return_ty: Type,
}

impl FnWorker {
    fn from_fn(func: &ItemFn) -> Result<Self> {
        let sig = &func.sig;
        func.modifiers.require_empty()?;
        if let Some(constness) = &sig.constness {
            return Err(Error::new(
                constness.span,
                "a worker function cannot be `const`; remove `const`",
            ));
        }
        match &sig.safety {
            syn::Safety::Default => {}
            syn::Safety::Unsafe(token) => {
                return Err(Error::new(
                    token.span,
                    "a worker function cannot be `unsafe`: the runtime has no way to uphold its \
                     safety contract; make it safe and use `unsafe` blocks inside",
                ))
            }
            syn::Safety::Safe(token) => {
                return Err(Error::new(
                    token.span,
                    "a worker function cannot be marked `safe`; remove it",
                ))
            }
        }
        if let Some(abi) = &sig.abi {
            return Err(Error::new_spanned(
                abi,
                "a worker function cannot be `extern`; remove the ABI",
            ));
        }
        if !sig.generics.params.is_empty() {
            return Err(Error::new_spanned(
                &sig.generics,
                "generic worker functions are not supported: a worker needs concrete job and \
                 output types",
            ));
        }
        if let Some(where_clause) = &sig.generics.where_clause {
            return Err(Error::new_spanned(
                where_clause,
                "worker functions cannot have a `where` clause: a worker needs concrete job and \
                 output types",
            ));
        }
        if let Some(variadic) = &sig.variadic {
            return Err(Error::new_spanned(
                variadic,
                format!("a worker function cannot be variadic; write {FN_FORMS}"),
            ));
        }

        let mut params = Vec::new();
        for arg in &sig.inputs {
            match arg {
                FnArg::Receiver(receiver) => {
                    return Err(Error::new_spanned(
                        receiver,
                        "a worker function cannot take `self`; for a worker with state, write \
                         `impl conductor::JobWorker for YourType` and put the attribute on the impl",
                    ))
                }
                FnArg::Typed(param) => params.push(param),
            }
        }
        let (job, worker) = match params.as_slice() {
            [] => {
                return Err(Error::new(
                    sig.paren_token.span.join(),
                    format!("a worker function takes the job as its first parameter: {FN_FORMS}"),
                ))
            }
            [job] => (*job, None),
            [job, worker] => (*job, Some(*worker)),
            [_, _, extra @ ..] => {
                let extra = extra.iter().map(|param| param.to_token_stream());
                return Err(Error::new_spanned(
                    quote!(#(#extra)*),
                    format!(
                        "a worker function takes at most 2 parameters, the job and \
                         `&conductor::Worker`: {FN_FORMS}"
                    ),
                ));
            }
        };
        for param in [Some(job), worker].into_iter().flatten() {
            check_param_pattern(param)?;
        }
        check_job_type(&job.ty)?;

        let return_ty = match &sig.output {
            ReturnType::Type(_, ty) if returns_result(ty) => (**ty).clone(),
            ReturnType::Type(_, ty) => {
                return Err(Error::new_spanned(
                    ty,
                    "a worker function must return `Result<Output, Error>`, \
                     e.g. `anyhow::Result<u64>` or `Result<u64, MyError>`",
                ))
            }
            ReturnType::Default => {
                return Err(Error::new_spanned(
                    sig,
                    "a worker function must return `Result<Output, Error>`; \
                     add e.g. `-> anyhow::Result<u64>`",
                ))
            }
        };

        Ok(FnWorker {
            ident: sig.ident.clone(),
            vis: func.vis.clone(),
            is_async: sig.asyncness.is_some(),
            job_ty: (*job.ty).clone(),
            worker_ty_span: worker.map(|param| param.ty.span()),
            return_ty,
        })
    }

    fn expand(&self, type_name: &LitStr, init: Option<&syn::Path>) -> TokenStream {
        let FnWorker {
            ident,
            vis,
            is_async,
            job_ty,
            worker_ty_span,
            return_ty,
        } = self;

        // The worker type has the function's name: a struct with braces lives only
        // in the type namespace, so it sits beside the fn without a clash, and
        // `Conductor::of::<square>()` names the worker with no string repeated. The
        // fn's span makes trait errors point at the fn.
        let worker_struct = ident.clone();

        // Mixed-site hygiene: a user fn named `job` or `worker` must still
        // resolve to the fn, not to these locals.
        let job = Ident::new("job", Span::mixed_site());
        let (worker_param, call) = match worker_ty_span {
            Some(ty_span) => {
                let worker = Ident::new("worker", Span::mixed_site());
                // Same hygiene, but located at the user's parameter type, so a
                // type mismatch is reported on their signature.
                let worker_arg = Ident::new("worker", Span::mixed_site().located_at(*ty_span));
                (worker, quote!(#ident(#job, #worker_arg)))
            }
            None => (
                Ident::new("_worker", Span::mixed_site()),
                quote!(#ident(#job)),
            ),
        };
        let call = if *is_async { quote!(#call.await) } else { call };

        // Errors such as "`Result<u64, String>`: JobReturn is not satisfied"
        // then point at the user's return type.
        let output = quote_spanned! {return_ty.span()=>
            <#return_ty as ::conductor::__private::JobReturn>::Output
        };
        let into_job_result = quote_spanned! {return_ty.span()=>
            ::conductor::__private::JobReturn::into_job_result
        };
        let submit = submit(&worker_struct.to_token_stream(), type_name);
        let init_param = Ident::new("worker", Span::mixed_site());
        // The hook's errors point at the path the user wrote.
        let run_init = init.map(|init| {
            quote_spanned! {init.span()=>
                ::conductor::__private::JobReturn::into_job_result(#init(#init_param))?;
            }
        });

        let doc = format!(
            "The worker type of [`{ident}()`](fn@{ident}), registered as `{}`: \
             `conductor::Conductor::of::<{ident}>()` runs it, its job and output types \
             checked at compile time.",
            type_name.value()
        );
        quote! {
            #[doc = #doc]
            #[allow(non_camel_case_types)]
            #vis struct #worker_struct {}

            #[allow(
                non_camel_case_types,
                unused_qualifications,
                clippy::all,
                clippy::pedantic,
                clippy::nursery,
                clippy::restriction
            )]
            const _: () = {
                #[automatically_derived]
                impl ::conductor::JobWorker for #worker_struct {
                    type Job = #job_ty;
                    type Output = #output;

                    async fn init(
                        #init_param: &::conductor::Worker,
                    ) -> ::conductor::__private::anyhow::Result<Self> {
                        let _ = #init_param;
                        #run_init
                        ::core::result::Result::Ok(Self {})
                    }

                    async fn process(
                        &mut self,
                        #job: Self::Job,
                        #worker_param: &::conductor::Worker,
                    ) -> ::conductor::__private::anyhow::Result<Self::Output> {
                        #into_job_result(#call)
                    }
                }

                #[automatically_derived]
                impl ::conductor::NamedWorker for #worker_struct {
                    const TYPE: &'static str = #type_name;
                }

                #submit
            };
        }
    }
}

/// Parameters are only passed through, but anything beyond a name (tuple
/// patterns, `ref`, ...) is rejected to keep worker signatures uniform.
fn check_param_pattern(param: &PatType) -> Result<()> {
    match &*param.pat {
        Pat::Ident(ident) if ident.by_ref.is_none() && ident.subpat.is_none() => Ok(()),
        Pat::Wild(_) => Ok(()),
        other => Err(Error::new_spanned(
            other,
            "worker function parameters must be plain names like `job` or `mut job`; \
             destructure inside the body",
        )),
    }
}

/// The job is deserialized into an owned value, so it cannot borrow, and it
/// becomes an associated type, so it must be a concrete type.
fn check_job_type(ty: &Type) -> Result<()> {
    match ty {
        Type::Reference(reference) => Err(Error::new_spanned(
            reference,
            "the job is deserialized and passed by value; take an owned type \
             (e.g. `String` instead of `&str`)",
        )),
        Type::ImplTrait(impl_trait) => Err(Error::new_spanned(
            impl_trait,
            "the job type must be a concrete type, not `impl Trait`",
        )),
        Type::Group(group) => check_job_type(&group.elem),
        Type::Paren(paren) => check_job_type(&paren.elem),
        _ => Ok(()),
    }
}

/// Whether the return type is spelled `...::Result<...>`. Only the name is
/// checked; `JobReturn` enforces the rest with a type error.
fn returns_result(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => {
            path.qself.is_none()
                && path
                    .path
                    .segments
                    .last()
                    .is_some_and(|segment| segment.ident == "Result")
        }
        // Types passed through `macro_rules!` arrive wrapped in a group.
        Type::Group(group) => returns_result(&group.elem),
        Type::Paren(paren) => returns_result(&paren.elem),
        _ => false,
    }
}

/// An `impl conductor::JobWorker for T` worker.
struct ImplWorker {
    self_ty: Type,
}

impl ImplWorker {
    fn from_impl(imp: &ItemImpl) -> Result<Self> {
        const HINT: &str = "#[conductor::worker] on an impl block must be on \
                            `impl conductor::JobWorker for YourType`";

        if !imp.generics.params.is_empty() {
            return Err(Error::new_spanned(
                &imp.generics,
                "generic workers are not supported; register a concrete type",
            ));
        }
        if let Some(where_clause) = &imp.generics.where_clause {
            return Err(Error::new_spanned(
                where_clause,
                "generic workers are not supported; register a concrete type",
            ));
        }
        let Some((path, _)) = &imp.trait_ else {
            let (impl_token, self_ty) = (&imp.impl_token, &imp.self_ty);
            return Err(Error::new_spanned(
                quote!(#impl_token #self_ty),
                format!("{HINT}; this is an inherent impl"),
            ));
        };
        if let Some(bang) = &imp.modifiers.polarity {
            return Err(Error::new(bang.span, HINT));
        }
        if path
            .segments
            .last()
            .is_none_or(|segment| segment.ident != "JobWorker")
        {
            return Err(Error::new_spanned(path, HINT));
        }
        Ok(ImplWorker {
            self_ty: (*imp.self_ty).clone(),
        })
    }

    fn named_worker_impl(&self, type_name: &LitStr) -> TokenStream {
        let self_ty = &self.self_ty;
        quote! {
            #[automatically_derived]
            impl ::conductor::NamedWorker for #self_ty {
                const TYPE: &'static str = #type_name;
            }
        }
    }

    fn expand(&self, type_name: &LitStr) -> TokenStream {
        let named = self.named_worker_impl(type_name);
        let submit = submit(&self.self_ty.to_token_stream(), type_name);
        quote! {
            #named

            #[allow(unused_qualifications, clippy::all, clippy::pedantic, clippy::nursery, clippy::restriction)]
            const _: () = {
                #submit
            };
        }
    }
}

/// The inventory registration of `worker` under `type_name`.
fn submit(worker: &TokenStream, type_name: &LitStr) -> TokenStream {
    // `file!`/`line!` spanned at the name, so the location the runtime reports
    // for a cross-module duplicate is where the name was written.
    let location = quote_spanned! {type_name.span()=>
        ::core::file!(), ::core::line!()
    };
    quote! {
        ::conductor::__private::inventory::submit! {
            ::conductor::__private::WorkerRegistration::new::<#worker>(#type_name, #location)
        }
    }
}

/// A module-level item whose name encodes the worker type name, so a second
/// registration of the same name in the same module is rustc's E0428
/// "defined multiple times", pointing at both literals.
fn duplicate_guard(type_name: &LitStr) -> TokenStream {
    let ident = Ident::new(
        &format!(
            "conductor_worker_type_{}_is_registered_twice_in_this_module",
            sanitize(&type_name.value())
        ),
        type_name.span(),
    );
    // rustc reports the whole item, so every token carries the literal's span.
    quote_spanned! {type_name.span()=>
        #[doc(hidden)]
        #[allow(dead_code, non_upper_case_globals)]
        const #ident: () = ();
    }
}

/// An injective mapping from type names to identifier characters: `_` is
/// doubled and every other non-alphanumeric character becomes `_` plus its
/// hex code, so `a-b`, `a_2db` and `a.b` stay distinct.
fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '_' => out.push_str("__"),
            c if c.is_ascii_alphanumeric() => out.push(c),
            c => out.push_str(&format!("_{:x}", u32::from(c))),
        }
    }
    out
}

/// A short token range naming the item (`struct Foo`, `trait Bar`, ...), so
/// the error does not underline a whole definition.
pub(crate) fn item_head(item: &Item) -> TokenStream {
    fn head(keyword: &dyn ToTokens, ident: &Ident) -> TokenStream {
        quote!(#keyword #ident)
    }
    match item {
        Item::Struct(s) => head(&s.struct_token, &s.ident),
        Item::Enum(e) => head(&e.enum_token, &e.ident),
        Item::Union(u) => head(&u.union_token, &u.ident),
        Item::Trait(t) => head(&t.trait_token, &t.ident),
        Item::TraitAlias(t) => head(&t.trait_token, &t.ident),
        Item::Type(t) => head(&t.type_token, &t.ident),
        Item::Const(c) => head(&c.const_token, &c.ident),
        Item::Static(s) => head(&s.static_token, &s.ident),
        Item::Mod(m) => head(&m.mod_token, &m.ident),
        Item::ExternCrate(e) => head(&e.crate_token, &e.ident),
        Item::Use(u) => u.use_token.to_token_stream(),
        Item::ForeignMod(f) => f.abi.to_token_stream(),
        Item::Macro(m) => m.mac.path.to_token_stream(),
        other => other.to_token_stream(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the macro and parses its output, which must always be valid Rust.
    fn run(args: TokenStream, item: TokenStream) -> syn::File {
        crate::test_util::parse_output(expand(args, item))
    }

    use crate::test_util::errors;

    fn single_error(args: TokenStream, item: TokenStream) -> String {
        let file = run(args, item);
        match errors(&file).as_slice() {
            [message] => message.clone(),
            other => panic!("expected exactly one error, got {other:?}"),
        }
    }

    fn text(tokens: impl ToTokens) -> String {
        tokens.to_token_stream().to_string()
    }

    /// The items inside the first `const _: () = { ... };` of the output.
    fn const_block_items(file: &syn::File) -> Vec<Item> {
        file.items
            .iter()
            .find_map(|item| match item {
                Item::Const(c) if c.ident == "_" => match &*c.expr {
                    syn::Expr::Block(block) => Some(
                        block
                            .block
                            .stmts
                            .iter()
                            .filter_map(|stmt| match stmt {
                                syn::Stmt::Item(item) => Some(item.clone()),
                                syn::Stmt::Macro(m) => Some(Item::Macro(syn::ItemMacro {
                                    attrs: m.attrs.clone(),
                                    ident: None,
                                    mac: m.mac.clone(),
                                    semi_token: m.semi_token,
                                })),
                                _ => None,
                            })
                            .collect(),
                    ),
                    _ => None,
                },
                _ => None,
            })
            .expect("a `const _` block")
    }

    fn guard_name(file: &syn::File) -> String {
        file.items
            .iter()
            .find_map(|item| match item {
                Item::Const(c) if c.ident != "_" => Some(c.ident.to_string()),
                _ => None,
            })
            .expect("a duplicate guard")
    }

    #[test]
    fn async_fn_with_worker_param() {
        let item = quote! {
            async fn square(n: u64, worker: &conductor::Worker) -> anyhow::Result<u64> {
                Ok(n * n)
            }
        };
        let file = run(quote!(type = "square"), item.clone());
        assert!(errors(&file).is_empty());
        // The function is emitted unchanged, first.
        assert_eq!(text(&file.items[0]), text(&item));
        assert_eq!(
            guard_name(&file),
            "conductor_worker_type_square_is_registered_twice_in_this_module"
        );

        // The worker type has the fn's name, beside it, with the fn's visibility.
        let worker_struct = file
            .items
            .iter()
            .find_map(|item| match item {
                Item::Struct(s) => Some(s),
                _ => None,
            })
            .expect("a worker struct");
        assert_eq!(worker_struct.ident, "square");
        assert!(matches!(worker_struct.fields, syn::Fields::Named(_)));

        let inner = const_block_items(&file);
        let Item::Impl(job_worker) = &inner[0] else {
            panic!("JobWorker impl first")
        };
        let job_worker = text(job_worker);
        assert!(job_worker.contains(":: conductor :: JobWorker for square"));
        assert!(job_worker.contains("type Job = u64 ;"));
        assert!(job_worker.contains(
            "type Output = < anyhow :: Result < u64 > as :: conductor :: __private :: JobReturn > :: Output ;"
        ));
        assert!(job_worker.contains(
            ":: conductor :: __private :: JobReturn :: into_job_result (square (job , worker) . await)"
        ));

        let Item::Impl(named) = &inner[1] else {
            panic!("NamedWorker impl second")
        };
        assert!(text(named).contains("const TYPE : & 'static str = \"square\" ;"));

        let Item::Macro(submit) = &inner[2] else {
            panic!("submit last")
        };
        let submit = text(submit);
        assert!(submit.starts_with(":: conductor :: __private :: inventory :: submit !"));
        assert!(submit.contains(
            ":: conductor :: __private :: WorkerRegistration :: new :: < square > (\"square\" , :: core :: file ! () , :: core :: line ! ())"
        ));
    }

    #[test]
    fn sync_fn_with_job_only() {
        let item = quote! {
            pub(crate) fn double(mut job: u64) -> Result<u64, std::io::Error> {
                job *= 2;
                Ok(job)
            }
        };
        let file = run(quote!(type = "double"), item.clone());
        assert!(errors(&file).is_empty());
        assert_eq!(text(&file.items[0]), text(&item));
        let job_worker = text(&const_block_items(&file)[0]);
        assert!(
            job_worker.contains("into_job_result (double (job))"),
            "{job_worker}"
        );
        assert!(!job_worker.contains(". await"), "{job_worker}");
        assert!(
            job_worker.contains("_worker : & :: conductor :: Worker"),
            "{job_worker}"
        );
    }

    #[test]
    fn accepts_various_result_spellings_and_param_names() {
        for item in [
            quote!(
                fn a(_job: String) -> std::io::Result<usize> {
                    todo!()
                }
            ),
            quote!(
                fn a(_: String, _: &conductor::Worker) -> ::core::result::Result<(), E> {
                    todo!()
                }
            ),
            quote!(
                async fn a(job: Vec<u8>, mut w: &Worker) -> Result<Vec<u8>> {
                    todo!()
                }
            ),
        ] {
            let file = run(quote!(type = "a"), item);
            assert!(errors(&file).is_empty(), "{:?}", errors(&file));
        }
    }

    #[test]
    fn without_a_type_the_worker_is_named_after_its_fn_or_type() {
        let file = run(
            quote!(),
            quote!(
                fn r#square(job: u8) -> Result<u8, E> {
                    Ok(job)
                }
            ),
        );
        assert!(errors(&file).is_empty());
        assert!(text(&const_block_items(&file)[1])
            .contains("const TYPE : & 'static str = \"square\" ;"));
        let file = run(
            quote!(),
            quote!(
                impl conductor::JobWorker for images::Resizer {}
            ),
        );
        assert!(file
            .items
            .iter()
            .any(|item| text(item).contains("const TYPE : & 'static str = \"Resizer\" ;")));
    }

    #[test]
    fn raw_ident_fn() {
        let file = run(
            quote!(type = "t"),
            quote!(
                fn r#try(job: u8) -> Result<u8, E> {
                    Ok(job)
                }
            ),
        );
        assert!(errors(&file).is_empty());
        assert!(file
            .items
            .iter()
            .any(|item| matches!(item, Item::Struct(s) if s.ident == "r#try")));
        assert!(text(&const_block_items(&file)[0]).contains("r#try (job)"));
    }

    #[test]
    fn impl_worker() {
        let item = quote! {
            impl conductor::JobWorker for Resizer {
                type Job = String;
                type Output = usize;
                async fn init(_w: &conductor::Worker) -> anyhow::Result<Self> { Ok(Resizer) }
                async fn process(&mut self, job: String, _w: &conductor::Worker) -> anyhow::Result<usize> { Ok(job.len()) }
            }
        };
        let file = run(quote!(type = "resize"), item.clone());
        assert!(errors(&file).is_empty());
        assert_eq!(text(&file.items[0]), text(&item));
        assert_eq!(
            guard_name(&file),
            "conductor_worker_type_resize_is_registered_twice_in_this_module"
        );
        let named = file
            .items
            .iter()
            .find_map(|item| match item {
                Item::Impl(imp)
                    if imp.trait_.is_some()
                        && text(&imp.trait_.as_ref()?.0).contains("NamedWorker") =>
                {
                    Some(imp)
                }
                _ => None,
            })
            .expect("NamedWorker impl");
        assert_eq!(text(&named.self_ty), "Resizer");
        assert!(text(named).contains("const TYPE : & 'static str = \"resize\" ;"));
        let submit = text(&const_block_items(&file)[0]);
        assert!(
            submit.contains("WorkerRegistration :: new :: < Resizer > (\"resize\""),
            "{submit}"
        );
    }

    #[test]
    fn impl_worker_with_imported_trait_and_concrete_generic_type() {
        let file = run(
            quote!(type = "w"),
            quote!(impl JobWorker for Wrapper<u32> { type Job = u32; }),
        );
        assert!(errors(&file).is_empty());
        assert!(text(&const_block_items(&file)[0]).contains("new :: < Wrapper < u32 > >"));
    }

    #[test]
    fn wrong_return_types() {
        let err = single_error(
            quote!(type = "x"),
            quote!(
                fn f(job: u64) -> u64 {
                    job
                }
            ),
        );
        assert!(err.contains("must return `Result<Output, Error>`"), "{err}");
        let err = single_error(
            quote!(type = "x"),
            quote!(
                fn f(job: u64) {}
            ),
        );
        assert!(err.contains("must return `Result<Output, Error>`"), "{err}");
        let err = single_error(
            quote!(type = "x"),
            quote!(
                fn f(job: u64) -> Option<u64> {
                    None
                }
            ),
        );
        assert!(err.contains("must return `Result<Output, Error>`"), "{err}");
        let err = single_error(
            quote!(type = "x"),
            quote!(
                fn f(job: u64) -> <T as Tr>::Result {
                    todo!()
                }
            ),
        );
        assert!(err.contains("must return `Result<Output, Error>`"), "{err}");
    }

    #[test]
    fn parameter_count() {
        let err = single_error(
            quote!(type = "x"),
            quote!(
                fn f() -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert!(
            err.contains("takes the job as its first parameter"),
            "{err}"
        );
        let err = single_error(
            quote!(type = "x"),
            quote!(
                fn f(a: u8, w: &Worker, extra: u8) -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert!(err.contains("at most 2 parameters"), "{err}");
    }

    #[test]
    fn rejects_self_generics_and_qualifiers() {
        let cases = [
            (
                quote!(
                    fn f(self) -> Result<(), E> {
                        Ok(())
                    }
                ),
                "cannot take `self`",
            ),
            (
                quote!(
                    fn f<T>(job: T) -> Result<(), E> {
                        Ok(())
                    }
                ),
                "generic worker functions",
            ),
            (
                quote!(
                    fn f<'a>(job: Cow<'a, str>) -> Result<(), E> {
                        Ok(())
                    }
                ),
                "generic worker functions",
            ),
            (
                quote!(
                    fn f(job: u8) -> Result<(), E>
                    where
                        u8: Copy,
                    {
                        Ok(())
                    }
                ),
                "`where` clause",
            ),
            (
                quote!(
                    const fn f(job: u8) -> Result<(), E> {
                        Ok(())
                    }
                ),
                "cannot be `const`",
            ),
            (
                quote!(
                    unsafe fn f(job: u8) -> Result<(), E> {
                        Ok(())
                    }
                ),
                "cannot be `unsafe`",
            ),
            (
                quote!(
                    extern "C" fn f(job: u8) -> Result<(), E> {
                        Ok(())
                    }
                ),
                "cannot be `extern`",
            ),
            (
                quote!(
                    fn f((a, b): (u8, u8)) -> Result<(), E> {
                        Ok(())
                    }
                ),
                "plain names",
            ),
            (
                quote!(
                    fn f(ref job: u8) -> Result<(), E> {
                        Ok(())
                    }
                ),
                "plain names",
            ),
            (
                quote!(
                    fn f(job: u8, Worker { .. }: &Worker) -> Result<(), E> {
                        Ok(())
                    }
                ),
                "plain names",
            ),
            (
                quote!(
                    fn f(job: &str) -> Result<(), E> {
                        Ok(())
                    }
                ),
                "owned type",
            ),
            (
                quote!(
                    fn f(job: impl Into<String>) -> Result<(), E> {
                        Ok(())
                    }
                ),
                "concrete type",
            ),
        ];
        for (item, expected) in cases {
            let err = single_error(quote!(type = "x"), item);
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
    }

    #[test]
    fn rejects_other_items() {
        for item in [
            quote!(
                struct S;
            ),
            quote!(
                enum E {
                    A,
                }
            ),
            quote!(
                trait T {}
            ),
            quote!(
                mod m {}
            ),
            quote!(
                static S: u8 = 0;
            ),
        ] {
            let err = single_error(quote!(type = "x"), item);
            assert_eq!(err, WRONG_ITEM);
        }
    }

    #[test]
    fn rejects_wrong_impls() {
        let cases = [
            (
                quote!(impl S { fn f() {} }),
                "must be on `impl conductor::JobWorker for YourType`",
            ),
            (
                quote!(impl Clone for S { }),
                "must be on `impl conductor::JobWorker for YourType`",
            ),
            (
                quote!(
                    impl<T> JobWorker for S<T> {}
                ),
                "generic workers are not supported; register a concrete type",
            ),
            (
                quote!(impl JobWorker for S where S: Send { }),
                "generic workers are not supported",
            ),
        ];
        for (item, expected) in cases {
            let err = single_error(quote!(type = "x"), item);
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
    }

    #[test]
    fn bad_args_keep_item_and_report_once() {
        let item = quote!(
            fn f(job: u8) -> Result<u8, E> {
                Ok(job)
            }
        );
        let file = run(quote!(type), item.clone());
        assert_eq!(errors(&file).len(), 1);
        assert!(errors(&file)[0].contains("expected `=`"));
        // The item survives (marked so it does not warn as unused), and
        // nothing else is generated that could produce follow-up errors.
        let Item::Fn(func) = &file.items[0] else {
            panic!("fn first")
        };
        assert_eq!(text(&func.attrs[0]), "# [allow (dead_code)]");
        assert_eq!(file.items.len(), 2);
    }

    #[test]
    fn bad_args_on_impl_still_implement_named_worker() {
        let file = run(
            quote!(type = 5),
            quote!(impl conductor::JobWorker for S { type Job = u8; }),
        );
        assert_eq!(errors(&file).len(), 1);
        assert!(file
            .items
            .iter()
            .any(|item| text(item).contains(":: conductor :: NamedWorker for S")));
        assert!(!text(&file).contains("submit"));
    }

    #[test]
    fn bad_args_and_bad_item_are_both_reported() {
        let file = run(
            quote!(name = "x"),
            quote!(
                struct S;
            ),
        );
        let errors = errors(&file);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("unknown key `name`"));
        assert_eq!(errors[1], WRONG_ITEM);
    }

    #[test]
    fn sanitize_is_injective_on_tricky_names() {
        let names = [
            "a-b", "a_2db", "a_2d_b", "a.b", "a:b", "a__b", "a_b", "ab", "a::b", "A-b",
        ];
        let sanitized: std::collections::BTreeSet<String> =
            names.iter().map(|name| sanitize(name)).collect();
        assert_eq!(sanitized.len(), names.len(), "{sanitized:?}");
        assert_eq!(sanitize("ns::img-2.v_1"), "ns_3a_3aimg_2d2_2ev__1");
        for name in sanitized {
            let ident = format!("conductor_worker_type_{name}_is_registered_twice_in_this_module");
            assert!(syn::parse_str::<Ident>(&ident).is_ok(), "{ident}");
        }
    }

    #[test]
    fn duplicate_guard_is_spanned_at_type_name() {
        let lit = LitStr::new("x", Span::call_site());
        let guard: syn::ItemConst = syn::parse2(duplicate_guard(&lit)).expect("a const item");
        assert_eq!(
            guard.ident,
            "conductor_worker_type_x_is_registered_twice_in_this_module"
        );
        assert!(text(&guard.attrs[1]).contains("dead_code"));
    }
}
