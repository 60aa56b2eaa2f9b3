//! The error-code table (`fovea_server::error_codes`) against the sources of
//! every crate whose errors reach a client, and the README's "Error codes"
//! section against the table. After adding a code to the table:
//!
//!     FOVEA_UPDATE_README=1 cargo test -p fovea-server --test error_codes

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use fovea_server::error_codes::{Answer, ERROR_CODES, markdown_table};

const BEGIN: &str =
    "<!-- error-codes:begin (generated from crates/fovea-server/src/error_codes.rs) -->\n";
const END: &str = "<!-- error-codes:end -->";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The string literal at the start of `text` (after whitespace), if any.
fn leading_literal(text: &str) -> Option<&str> {
    let rest = text.trim_start().strip_prefix('"')?;
    rest.split_once('"').map(|(literal, _)| literal)
}

/// `text` after its first top-level comma (the call's second argument).
fn after_first_argument(text: &str) -> Option<&str> {
    let mut depth = 0i32;
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth == 0 => return None,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => return Some(&text[i + 1..]),
            _ => {}
        }
    }
    None
}

fn snake_case(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Codes used in `source`, with the kind written at the call when it says
/// one: `ApiError::new(kind, "code", ..)`, `ApiError::invalid("code", ..)`,
/// `json_error(status, "code", ..)`, and every literal of `fn code(&self)`.
fn codes_in(source: &str) -> Vec<(String, Option<String>)> {
    let mut found = Vec::new();
    for (at, _) in source.match_indices("ApiError::new(") {
        let args = &source[at + "ApiError::new(".len()..];
        let kind = args.split(',').next().unwrap_or_default().trim();
        let kind = kind.rsplit("::").next().unwrap_or(kind).to_string();
        if let Some(code) = after_first_argument(args).and_then(leading_literal) {
            found.push((code.to_string(), Some(kind)));
        }
    }
    for (at, _) in source.match_indices("ApiError::invalid(") {
        if let Some(code) = leading_literal(&source[at + "ApiError::invalid(".len()..]) {
            found.push((code.to_string(), Some("InvalidInput".to_string())));
        }
    }
    for (at, _) in source.match_indices("json_error(") {
        let args = &source[at + "json_error(".len()..];
        if let Some(code) = after_first_argument(args).and_then(leading_literal) {
            found.push((code.to_string(), None));
        }
    }
    for (at, _) in source.match_indices("fn code(&self)") {
        let Some(open) = source[at..].find('{') else {
            continue;
        };
        let body_start = at + open + 1;
        let mut depth = 1;
        let mut end = body_start;
        for (i, c) in source[body_start..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = body_start + i;
                break;
            }
        }
        for literal in source[body_start..end].split('"').skip(1).step_by(2) {
            if snake_case(literal) {
                found.push((literal.to_string(), None));
            }
        }
    }
    found.retain(|(code, _)| snake_case(code));
    found
}

#[test]
fn every_code_the_sources_use_is_in_the_table_and_no_other() {
    let mut files = Vec::new();
    for krate in [
        "fovea-core",
        "fovea-vision",
        "fovea-engine",
        "fovea-pipeline",
        "fovea-proto",
        "fovea-server",
    ] {
        rust_files(
            &workspace().join("crates").join(krate).join("src"),
            &mut files,
        );
    }
    let table: BTreeMap<&str, Answer> = ERROR_CODES.iter().map(|c| (c.code, c.answer)).collect();
    assert_eq!(
        table.len(),
        ERROR_CODES.len(),
        "a code is in the table twice"
    );
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    for file in &files {
        // The table itself names every code; it is what is checked.
        if file.ends_with("error_codes.rs") {
            continue;
        }
        let source = std::fs::read_to_string(file).unwrap();
        // Unit tests make up codes of their own.
        let source = source
            .split("#[cfg(test)]\nmod ")
            .next()
            .unwrap_or_default();
        for (code, kind) in codes_in(source) {
            match (table.get(code.as_str()), kind) {
                (None, _) => problems.push(format!(
                    "{}: `{code}` is not in crates/fovea-server/src/error_codes.rs",
                    file.display()
                )),
                (Some(Answer::Kind(documented)), Some(kind))
                    if format!("{documented:?}") != kind =>
                {
                    problems.push(format!(
                        "{}: `{code}` is {kind} here, {documented:?} in the table",
                        file.display()
                    ))
                }
                _ => {}
            }
            used.insert(code);
        }
    }
    for code in table.keys() {
        if !used.contains(*code) {
            problems.push(format!("`{code}` is in the table but no source uses it"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_readme_table_is_the_generated_one() {
    let path = workspace().join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let (Some(begin), Some(end)) = (readme.find(BEGIN), readme.find(END)) else {
        panic!("README.md lacks the markers {BEGIN:?} ... {END:?}");
    };
    let current = &readme[begin + BEGIN.len()..end];
    let generated = markdown_table();
    if current == generated {
        return;
    }
    if std::env::var_os("FOVEA_UPDATE_README").is_some() {
        let updated = format!("{}{BEGIN}{generated}{}", &readme[..begin], &readme[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    panic!(
        "README.md's error-code table is out of date; regenerate it with\n  \
         FOVEA_UPDATE_README=1 cargo test -p fovea-server --test error_codes"
    );
}
