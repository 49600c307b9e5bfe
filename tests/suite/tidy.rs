//! The house keeps its shape: imports run one way, from a layer to its own folder or to the
//! layers below it (model ← ingest ← analyze ← report ← api ← scale ← serve ← cli), nothing
//! ties files or folders in a circle, and `ARCHITECTURE.md`'s code map names every source
//! file. Read from the text of `src/` (std only, like rust-analyzer's `tidy.rs`), so a new
//! file or a stray `use` fails here before anyone has to notice.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, bottom up: a module may import from its own top-level room or from a room of
/// a lower or equal rank (equal ranks are peers; the cycle checks keep them one-way).
const LAYERS: &[(&str, u32)] = &[
    ("clock", 0),
    ("model", 0),
    ("ingest", 1),
    ("analyze", 2),
    ("simulate", 2),
    ("report", 3),
    ("api", 4),
    ("testkit", 4),
    ("replay", 5),
    ("scale", 5),
    ("serve", 6),
    ("cli", 7),
    ("main", 8),
];

/// Crates a `use` can start with that are not modules of ours.
fn is_external(first: &str) -> bool {
    !matches!(first, "crate" | "super" | "self" | "chokepoint")
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Module {
    /// `true` for the binary (`main.rs`, `cli/`), whose `crate::` is not the library's.
    bin: bool,
    path: Vec<String>,
}

struct Source {
    /// Relative to the project root, e.g. `src/serve/receive/grpc.rs`.
    file: String,
    module: Module,
    text: String,
}

fn root() -> PathBuf {
    std::env::var_os("TIDY_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn sources(root: &Path) -> Vec<Source> {
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        // A test module's own file (`#[cfg(test)] mod tests;`) is test code.
        .filter(|p| p.file_name().is_some_and(|n| n != "tests.rs"))
        .map(|p| {
            let rel = p.strip_prefix(root).expect("under root");
            let file = rel.to_string_lossy().replace('\\', "/");
            let in_src = file.trim_start_matches("src/").trim_end_matches(".rs");
            let mut path: Vec<String> = in_src.split('/').map(str::to_owned).collect();
            if path.last().is_some_and(|l| l == "mod" || l == "lib") {
                path.pop();
            }
            let bin = path.first().is_some_and(|f| f == "main" || f == "cli");
            if path.first().is_some_and(|f| f == "main") {
                path.clear();
            }
            let text = fs::read_to_string(&p).expect("readable source");
            Source {
                file,
                module: Module { bin, path },
                text: clean(&text),
            }
        })
        .collect()
}

/// The source without comments, string contents or char literals, and without the items
/// under `#[cfg(test)]`: what is left is what the code itself names.
fn clean(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == 'r'
            && matches!(next, Some('"') | Some('#'))
            && !ident_char(b.get(i.wrapping_sub(1)).copied())
        {
            // Raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            'raw: while j < b.len() {
                if b[j] == '"' && (0..hashes).all(|h| b.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break 'raw;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('x', '\n', '{'), or a lifetime ('a), which stays.
            if next == Some('\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            } else if b.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    without_test_items(&out)
}

fn ident_char(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// Drops each item that follows `#[cfg(test)]`: up to its closing brace, or its `;`.
fn without_test_items(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at + "#[cfg(test)]".len()..];
        let mut depth = 0i32;
        let mut end = item.len();
        for (k, ch) in item.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = k + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = k + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// Every path the text names that starts at `crate`, `super`, `self` or `chokepoint`, or at
/// a child module in a `use`, with `{a, b::c}` groups spread out.
fn paths(text: &str) -> Vec<(Vec<String>, bool)> {
    let toks = tokens(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let starts_use = toks[i] == "use";
        if starts_use {
            i += 1;
            if toks.get(i).is_some_and(|t| t == "::") {
                i += 1;
            }
            let mut found = Vec::new();
            i = tree(&toks, i, Vec::new(), &mut found);
            out.extend(found.into_iter().map(|p| (p, true)));
            continue;
        }
        let t = &toks[i];
        let at_path_start = i == 0 || toks[i - 1] != "::";
        if at_path_start && is_ident(t) && toks.get(i + 1).is_some_and(|n| n == "::") {
            let mut p = vec![t.clone()];
            let mut j = i + 1;
            while toks.get(j).is_some_and(|n| n == "::")
                && toks.get(j + 1).is_some_and(|n| is_ident(n))
            {
                p.push(toks[j + 1].clone());
                j += 2;
            }
            out.push((p, false));
            i = j;
            continue;
        }
        i += 1;
    }
    out
}

/// One `use` tree from `toks[i]`: pushes the paths it names onto `out`; returns where it ends.
fn tree(toks: &[String], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut p = prefix;
    loop {
        match toks.get(i).map(String::as_str) {
            Some("{") => {
                i += 1;
                loop {
                    i = tree(toks, i, p.clone(), out);
                    match toks.get(i).map(String::as_str) {
                        Some(",") => i += 1,
                        Some("}") => return i + 1,
                        _ => return i,
                    }
                }
            }
            Some("*") => {
                out.push(p);
                return i + 1;
            }
            Some(t) if is_ident(t) => {
                p.push(t.to_owned());
                i += 1;
                if toks.get(i).is_some_and(|n| n == "::") {
                    i += 1;
                    continue;
                }
                if toks.get(i).is_some_and(|n| n == "as") {
                    i += 2;
                }
                out.push(p);
                return i;
            }
            _ => return i,
        }
    }
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && t.chars().all(|c| c.is_alphanumeric() || c == '_')
}

fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_alphanumeric() || c == '_' {
            let s = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            out.push(b[s..i].iter().collect());
        } else if c == ':' && b.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else if c.is_whitespace() {
            i += 1;
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

/// The module a path names, as the longest of its prefixes that is one of ours.
fn resolve(from: &Module, path: &[String], known: &BTreeSet<Module>) -> Option<Module> {
    let (bin, mut base, mut rest): (bool, Vec<String>, &[String]) = match path.first()?.as_str() {
        "crate" => (from.bin, Vec::new(), &path[1..]),
        "chokepoint" => (false, Vec::new(), &path[1..]),
        "self" => (from.bin, from.path.clone(), &path[1..]),
        "super" => {
            let mut b = from.path.clone();
            b.pop();
            (from.bin, b, &path[1..])
        }
        // `child::X` (in a `use` or in code) names a module below this one.
        _ => (from.bin, from.path.clone(), path),
    };
    while rest.first().is_some_and(|s| s == "super") {
        base.pop();
        rest = &rest[1..];
    }
    let mut best = None;
    let mut cand = base;
    for seg in std::iter::once(None).chain(rest.iter().map(Some)) {
        if let Some(seg) = seg {
            cand.push(seg.clone());
        }
        let m = Module {
            bin,
            path: cand.clone(),
        };
        if known.contains(&m) {
            best = Some(m);
        } else if seg.is_some() {
            break;
        }
    }
    best
}

/// Imports between files: file → the files it names (not itself, not its own ancestors'
/// `mod` lines).
fn graph(srcs: &[Source]) -> BTreeMap<String, BTreeSet<String>> {
    let known: BTreeSet<Module> = srcs.iter().map(|s| s.module.clone()).collect();
    let file_of: BTreeMap<&Module, &str> =
        srcs.iter().map(|s| (&s.module, s.file.as_str())).collect();
    let mut g = BTreeMap::new();
    for s in srcs {
        let mut to = BTreeSet::new();
        // A `use` that starts at a child module (`use normalize::X`) is read as one.
        for (p, _) in paths(&s.text) {
            let relative = is_external(&p[0]);
            let Some(m) = resolve(&s.module, &p, &known) else {
                continue;
            };
            // A crate root (`lib.rs`, `main.rs`) names everything in `mod` lines, not imports.
            if m.path.is_empty() || m == s.module {
                continue;
            }
            if relative && !m.path.starts_with(&s.module.path) {
                continue;
            }
            if let Some(f) = file_of.get(&m) {
                to.insert((*f).to_owned());
            }
        }
        g.insert(s.file.clone(), to);
    }
    g
}

fn room(file: &str) -> String {
    let in_src = file.trim_start_matches("src/");
    let first = in_src.split('/').next().unwrap_or(in_src);
    first.trim_end_matches(".rs").to_owned()
}

/// Strongly connected components of more than one file (Tarjan).
fn circles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        let g = t.g;
        for w in g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// A module's path in `src/` (`serve/receive/grpc`; `mod.rs` is its folder).
fn unit(f: &str) -> Vec<String> {
    f.trim_start_matches("src/")
        .trim_end_matches(".rs")
        .trim_end_matches("/mod")
        .split('/')
        .map(str::to_owned)
        .collect()
}

/// The imports without those between a module and the modules declared inside it: in Rust
/// those are one module split over files (a child sees its parent's private helpers), so
/// only circles between siblings, at any depth, are circles.
fn between_siblings(g: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    g.iter()
        .map(|(a, tos)| {
            let ua = unit(a);
            let keep = tos
                .iter()
                .filter(|b| {
                    let ub = unit(b);
                    !(ua.starts_with(&ub) || ub.starts_with(&ua))
                })
                .cloned()
                .collect();
            (a.clone(), keep)
        })
        .collect()
}

/// Folders (and files) under one parent, tied by the imports of what they hold: `a → b` when
/// a file under `a` imports a file under `b`.
fn folder_edges(g: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, tos) in g {
        let ua = unit(a);
        for b in tos {
            let ub = unit(b);
            let common = ua.iter().zip(&ub).take_while(|(x, y)| x == y).count();
            // One inside the other (a module and its own children) is not between siblings.
            if common == ua.len() || common == ub.len() {
                continue;
            }
            let sa = format!("src/{}", ua[..=common].join("/"));
            let sb = format!("src/{}", ub[..=common].join("/"));
            out.entry(sa).or_default().insert(sb);
        }
    }
    out
}

/// The longest chain of imports, as the files on it (files in a circle count as one).
fn longest_chain(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut comp_of: BTreeMap<String, String> = BTreeMap::new();
    for c in circles(g) {
        let name = format!("({})", c.join(" "));
        for f in c {
            comp_of.insert(f, name.clone());
        }
    }
    let id = |f: &str| comp_of.get(f).cloned().unwrap_or_else(|| f.to_owned());
    let mut cg: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, tos) in g {
        let e = cg.entry(id(a)).or_default();
        for b in tos {
            if id(a) != id(b) {
                e.insert(id(b));
            }
        }
    }
    fn chain(
        v: &str,
        cg: &BTreeMap<String, BTreeSet<String>>,
        memo: &mut BTreeMap<String, Vec<String>>,
    ) -> Vec<String> {
        if let Some(c) = memo.get(v) {
            return c.clone();
        }
        let mut best = Vec::new();
        for w in cg.get(v).into_iter().flatten() {
            let c = chain(w, cg, memo);
            if c.len() > best.len() {
                best = c;
            }
        }
        best.insert(0, v.to_owned());
        memo.insert(v.to_owned(), best.clone());
        best
    }
    let mut memo = BTreeMap::new();
    let mut best = Vec::new();
    for v in cg.keys() {
        let c = chain(v, &cg, &mut memo);
        if c.len() > best.len() {
            best = c;
        }
    }
    best
}

/// Imports between top-level rooms (`serve`, `analyze`, `clock`, ...).
fn rooms(g: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, tos) in g {
        for b in tos {
            if room(a) != room(b) {
                out.entry(room(a)).or_default().insert(room(b));
            }
        }
    }
    out
}

/// The files `ARCHITECTURE.md`'s code map names: each bullet opens with a path in backticks
/// (a file, or a folder ending in `/`) and may name files and subfolders of that folder in
/// backticks after it.
fn code_map(root: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let text = fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let map = text
        .split("\n## ")
        .find(|s| s.starts_with("Code map"))
        .expect("ARCHITECTURE.md has a `## Code map` section");
    let mut files = BTreeSet::new();
    let mut folders = BTreeSet::new();
    let mut bullets: Vec<String> = Vec::new();
    for line in map.lines() {
        if line.starts_with("- ") {
            bullets.push(line.to_owned());
        } else if let Some(b) = bullets.last_mut() {
            b.push(' ');
            b.push_str(line.trim());
        }
    }
    for b in bullets {
        let named: Vec<&str> = b.split('`').skip(1).step_by(2).collect();
        let Some(lead) = named.first().copied() else {
            continue;
        };
        let folder = if lead.ends_with('/') {
            folders.insert(lead.to_owned());
            lead.to_owned()
        } else {
            files.insert(lead.to_owned());
            match lead.rfind('/') {
                Some(k) => lead[..=k].to_owned(),
                None => String::new(),
            }
        };
        for n in &named[1..] {
            let n = n.trim();
            if n.ends_with(".rs") && n.starts_with("src/") {
                files.insert(n.to_owned());
            } else if n.ends_with(".rs") && !n.contains(' ') {
                files.insert(format!("{folder}{n}"));
            } else if n.ends_with('/') && !n.contains(' ') && !n.starts_with("src/") {
                folders.insert(format!("{folder}{n}"));
            }
        }
    }
    (files, folders)
}

#[test]
fn imports_run_one_way_and_the_code_map_names_every_file() {
    let root = root();
    let srcs = sources(&root);
    assert!(srcs.len() > 50, "read {} files under src/", srcs.len());
    let g = graph(&srcs);
    let rank: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let mut problems = Vec::new();

    for s in &srcs {
        let r = room(&s.file);
        if r != "lib" && !rank.contains_key(r.as_str()) {
            problems.push(format!(
                "{}: `{r}` has no layer: add it to LAYERS in tests/suite/tidy.rs and to the code map",
                s.file
            ));
        }
    }
    for (a, tos) in &g {
        let ra = room(a);
        for b in tos {
            let rb = room(b);
            if let (Some(x), Some(y)) = (rank.get(ra.as_str()), rank.get(rb.as_str())) {
                if y > x {
                    problems.push(format!(
                        "{a} imports {b}: `{ra}` (layer {x}) must not use `{rb}` (layer {y}) above it"
                    ));
                }
            }
        }
    }
    for c in circles(&between_siblings(&g)) {
        problems.push(format!("files in a circle of imports: {}", c.join(", ")));
    }
    for c in circles(&folder_edges(&g)) {
        problems.push(format!("folders in a circle of imports: {}", c.join(", ")));
    }

    let (files, folders) = code_map(&root);
    for s in &srcs {
        let f = &s.file;
        let named = files.contains(f)
            || (f.ends_with("/mod.rs") && folders.contains(f.trim_end_matches("mod.rs")))
            || f == "src/lib.rs";
        if !named {
            problems.push(format!("{f} is not in ARCHITECTURE.md's code map"));
        }
    }
    for f in &files {
        if !root.join(f).exists() && !f.ends_with("/tests.rs") {
            problems.push(format!(
                "ARCHITECTURE.md's code map names {f}, which does not exist"
            ));
        }
    }

    let edges: usize = g.values().map(BTreeSet::len).sum();
    let files_chain = longest_chain(&g);
    let rooms_chain = longest_chain(&rooms(&g));
    eprintln!(
        "import graph: {} files, {edges} imports between files; longest chain {} files: {}; \
         between top-level rooms {}: {}",
        srcs.len(),
        files_chain.len(),
        files_chain.join(" -> "),
        rooms_chain.len(),
        rooms_chain.join(" -> ")
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_reader_sees_through_comments_strings_and_test_modules() {
    let text = clean(
        "use crate::a::{b, c::d as e};\n// crate::f::g\nlet s = \"crate::h::i\";\nlet c = '{';\n\
         #[cfg(test)]\nmod tests { use crate::j::k; fn x() { let y = '}'; } }\nfn z() { super::l::m(); }",
    );
    let p = paths(&text);
    let names: Vec<String> = p.iter().map(|(p, _)| p.join("::")).collect();
    assert_eq!(names, ["crate::a::b", "crate::a::c::d", "super::l::m"]);
}
