//! The tests that keep the daemon's layers: every `crate::` path a module names must be an
//! edge of the table in `lib.rs`'s `# Layout` section (read from there, so the document
//! and the check cannot drift apart), the table must have no cycle and must cover every
//! top-level module, and two rules of the API layer hold: `tonic::Status` is built only in
//! `rpc/status.rs`, and only `rpc/authorize.rs` finds the domain a call names.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// The crate root may wire anything together, the binary names the library by its name,
/// and this file's examples are not imports.
const SKIPPED: &[&str] = &["lib.rs", "main.rs", "layers.rs"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, with its path relative to `src`.
fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("read src")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = fs::read_to_string(&path).expect("read source");
            let relative = path.strip_prefix(src()).expect("under src");
            out.push((relative.to_string_lossy().into_owned(), text));
        }
    }
}

/// The text without `//` comments, so a doc comment naming a module is not an import.
fn code(text: &str) -> String {
    text.lines()
        .map(|line| line.split_once("//").map_or(line, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a file belongs to: `rpc/authorize.rs` and `rpc.rs` are `rpc`.
fn module_of(file: &str) -> &str {
    let first = file.split('/').next().unwrap_or(file);
    first.strip_suffix(".rs").unwrap_or(first)
}

/// The first path segment of each item at the top level of a `{...}` group starting at
/// `text[0]`: `store` for `store::Store`, `store as db` and `store`; `*` for a glob; `{`
/// for an item that is itself a group (which names no module by itself).
fn group_heads(text: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut item = String::new();
    let mut item_done = false;
    let mut finish = |item: &mut String, done: &mut bool| {
        if !item.is_empty() {
            heads.push(std::mem::take(item));
        }
        *done = false;
    };
    for c in text.chars() {
        match c {
            '{' if depth == 1 && item.is_empty() && !item_done => {
                item.push('{');
                item_done = true;
                depth += 1;
            }
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    finish(&mut item, &mut item_done);
                    break;
                }
            }
            ',' if depth == 1 => finish(&mut item, &mut item_done),
            c if depth == 1 && !item_done && (c.is_alphanumeric() || c == '_' || c == '*') => {
                item.push(c)
            }
            c if depth == 1 && !item.is_empty() && (c.is_whitespace() || c == ':') => {
                item_done = true
            }
            _ => {}
        }
    }
    heads
}

/// The first segments `text` names after `crate::` (modules, or what the crate root
/// exports), `*` for a glob.
fn crate_references(text: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        // `$crate::` in a macro is this crate too; any other identifier before it is not.
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = text[at + "crate::".len()..].trim_start();
        if rest.starts_with('{') {
            named.extend(group_heads(rest).into_iter().filter(|h| h != "{"));
        } else {
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '*')
                .collect();
            named.insert(ident);
        }
    }
    named
}

/// How many modules deep `file` is: `rpc.rs` and `rpc/mod.rs` are 1, `rpc/conn.rs` 2. A
/// file that a sibling includes with `#[path]` (the `*_tests.rs` files) is that sibling's
/// child, one deeper.
fn depth_of(file: &str, included: bool) -> usize {
    let parts: Vec<&str> = file.split('/').collect();
    let own = if parts.last() == Some(&"mod.rs") {
        parts.len() - 1
    } else {
        parts.len()
    };
    own + usize::from(included)
}

/// The first segment after each `super::` chain that climbs from a file `depth` modules
/// deep to the crate root (and so names a top-level module or a root item). A glob is
/// left out: `use super::*` is how an inline `mod tests` (one deeper than its file) takes
/// its parent's items.
fn root_references(text: &str, depth: usize) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for (at, _) in text.match_indices("super::") {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let mut rest = &text[at..];
        let mut climbed = 0;
        while let Some(after) = rest.strip_prefix("super::") {
            climbed += 1;
            rest = after.trim_start();
        }
        if climbed < depth {
            continue;
        }
        if rest.starts_with('{') {
            named.extend(group_heads(rest).into_iter().filter(|h| h != "{"));
        } else {
            named.insert(
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '*')
                    .collect(),
            );
        }
    }
    named.retain(|head| head != "*" && !head.is_empty());
    named
}

/// The `# Layout` table: module -> the modules it may import.
fn layout_table() -> BTreeMap<String, BTreeSet<String>> {
    let lib = fs::read_to_string(src().join("lib.rs")).expect("read lib.rs");
    let mut table = BTreeMap::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! | `") else {
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let module = cells[0].trim_end_matches('`').to_owned();
        let imports = cells
            .get(2)
            .expect("a row has a module, what it owns and what it may import");
        let allowed = imports
            .split(',')
            .map(|m| m.trim().trim_matches('`').to_owned())
            .filter(|m| !m.is_empty() && m != "nothing")
            .collect();
        table.insert(module, allowed);
    }
    table
}

/// The modules `lib.rs` declares.
fn declared_modules() -> BTreeSet<String> {
    let lib = fs::read_to_string(src().join("lib.rs")).expect("read lib.rs");
    lib.lines()
        .filter_map(|l| {
            l.strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("mod "))
        })
        .filter_map(|l| l.strip_suffix(';'))
        .filter(|m| *m != "layers")
        .map(str::to_owned)
        .collect()
}

/// What the crate root re-exports (`pub use reload::Reloader;`): item -> its module.
fn root_exports() -> BTreeMap<String, String> {
    let lib = fs::read_to_string(src().join("lib.rs")).expect("read lib.rs");
    lib.lines()
        .filter_map(|l| l.strip_prefix("pub use ")?.strip_suffix(';'))
        .filter_map(|path| {
            let (module, item) = path.split_once("::")?;
            Some((item.to_owned(), module.to_owned()))
        })
        .collect()
}

/// The files another file includes with `#[path = "..."]`, relative to `src`.
fn included_files(files: &[(String, String)]) -> BTreeSet<String> {
    let mut included = BTreeSet::new();
    for (file, text) in files {
        let dir = file.rsplit_once('/').map_or("", |(dir, _)| dir);
        for (at, _) in text.match_indices("#[path = \"") {
            let rest = &text[at + "#[path = \"".len()..];
            if let Some((path, _)) = rest.split_once('"') {
                included.insert(if dir.is_empty() {
                    path.to_owned()
                } else {
                    format!("{dir}/{path}")
                });
            }
        }
    }
    included
}

/// Every import of one top-level module from another, with the file that makes it; and
/// every path through the crate root that names neither a module nor a re-export of one
/// (a glob, an item of `lib.rs`), which the layering cannot judge.
fn imports() -> (Vec<(String, String, String)>, Vec<String>) {
    let modules = declared_modules();
    let exports = root_exports();
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let included = included_files(&files);
    let mut found = Vec::new();
    let mut unjudged = Vec::new();
    for (file, text) in &files {
        if SKIPPED.contains(&file.as_str()) {
            continue;
        }
        let from = module_of(file).to_owned();
        let text = code(text);
        let depth = depth_of(file, included.contains(file));
        let mut heads = crate_references(&text);
        heads.extend(root_references(&text, depth));
        for head in heads {
            let to = if modules.contains(&head) {
                head
            } else if let Some(module) = exports.get(&head) {
                module.clone()
            } else {
                unjudged.push(format!("{file}: crate::{head}"));
                continue;
            };
            if to != from {
                found.push((from.clone(), to, file.clone()));
            }
        }
    }
    (found, unjudged)
}

#[test]
fn the_layout_table_covers_every_module_and_names_only_modules() {
    let table = layout_table();
    let modules = declared_modules();
    let listed: BTreeSet<String> = table.keys().cloned().collect();
    assert_eq!(
        listed, modules,
        "lib.rs's # Layout table and its `mod`s differ"
    );
    for (module, allowed) in &table {
        for target in allowed {
            assert!(
                modules.contains(target),
                "the row of `{module}` names `{target}`, which is no module"
            );
        }
    }
}

#[test]
fn the_layout_table_has_no_cycle() {
    let table = layout_table();
    // Depth-first, carrying the path walked, from every module.
    fn walk(
        table: &BTreeMap<String, BTreeSet<String>>,
        module: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(at) = path.iter().position(|m| m == module) {
            panic!(
                "the layout has a cycle: {} -> {module}",
                path[at..].join(" -> ")
            );
        }
        if !done.insert(module.to_owned()) {
            return;
        }
        path.push(module.to_owned());
        for next in table.get(module).into_iter().flatten() {
            walk(table, next, path, done);
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for module in table.keys() {
        walk(&table, module, &mut Vec::new(), &mut done);
    }
}

#[test]
fn every_import_is_an_edge_of_the_layout_table() {
    let table = layout_table();
    let (imports, unjudged) = imports();
    assert!(
        unjudged.is_empty(),
        "paths through the crate root that name no module (a glob, or an item of lib.rs): \
         name the module instead:\n  {}",
        unjudged.join("\n  ")
    );
    let outside: Vec<String> = imports
        .into_iter()
        .filter(|(from, to, _)| !table.get(from).is_some_and(|allowed| allowed.contains(to)))
        .map(|(from, to, file)| format!("{file}: {from} -> {to}"))
        .collect();
    assert!(
        outside.is_empty(),
        "imports outside lib.rs's # Layout table (move the type down, or pass a trait up; \
         do not add the edge unless the layering says so):\n  {}",
        outside.join("\n  ")
    );
}

#[test]
fn the_scanner_sees_every_form_of_import() {
    let text = "use crate::{\n    core::{Manager, Target},\n    store::Store, shutdown\n};\n\
                fn f() { crate::vnc::rfb::x(); $crate::rpc::y() }\nuse other_crate::tls;";
    let found: Vec<String> = crate_references(text).into_iter().collect();
    assert_eq!(found, ["core", "rpc", "shutdown", "store", "vnc"]);
    let aliased = "use crate::{store as db, self as root, {tls::X}, audit::*};\nuse crate::*;";
    let found: Vec<String> = crate_references(aliased).into_iter().collect();
    assert_eq!(found, ["*", "audit", "self", "store"]);
    let climbing =
        "use super::super::store::Store; use super::sibling; fn f() { super::super::{core, x} }";
    let found: Vec<String> = root_references(climbing, 2).into_iter().collect();
    assert_eq!(found, ["core", "store", "x"]);
    assert_eq!(depth_of("rpc/mod.rs", false), 1);
    assert_eq!(depth_of("audit_log/flood_tests.rs", true), 3);
    assert_eq!(code("let a = 1; // crate::store"), "let a = 1; ");
}

/// Whether code builds a `tonic::Status` itself: names a constructor (`Status::new`,
/// `Status::internal`, called or passed as a function; `Status::from` is the mapping in
/// `rpc/status.rs`), or renames the type to hide it.
fn builds_status(text: &str) -> bool {
    let constructor = text.match_indices("Status::").any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let named: String = text[at + "Status::".len()..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && named.starts_with(|c: char| c.is_ascii_lowercase())
            && named != "from"
    });
    constructor || text.contains("Status as ")
}

/// The source files (paths relative to `src`) whose code, comments left out, `keep` picks.
fn files_where(keep: impl Fn(&str, &str) -> bool) -> Vec<String> {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    files
        .into_iter()
        .filter(|(file, text)| keep(file, &code(text)))
        .map(|(file, _)| file)
        .collect()
}

#[test]
fn every_grpc_status_is_built_in_rpc_status() {
    let builders = files_where(|file, code| {
        !["rpc/status.rs", "layers.rs"].contains(&file) && builds_status(code)
    });
    assert!(
        builders.is_empty(),
        "tonic::Status built outside rpc/status.rs (add a function there): {builders:?}"
    );
    assert!(builds_status("Err(tonic::Status::internal(\"x\"))"));
    assert!(builds_status(".map_err(Status::internal)"));
    assert!(builds_status("use tonic::Status as S;"));
    assert!(!builds_status(
        "GuestStatus::Running; Status::from(e); Result<(), Status>"
    ));
}

#[test]
fn only_authorize_finds_the_domain_of_a_call() {
    let finders = files_where(|file, code| {
        module_of(file) == "rpc" && file != "rpc/authorize.rs" && code.contains(".find_target(")
    });
    assert!(
        finders.is_empty(),
        "only rpc/authorize.rs may find a call's domain (handlers get it Granted): {finders:?}"
    );
}
