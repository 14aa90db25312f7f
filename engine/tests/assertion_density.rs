//! Assertion density of the engine's core: at least 1.5 assertions per
//! function, on average, over the non-test code of `src/store/*.rs`,
//! `src/targets/*.rs` and `src/exception_table.rs` (TigerBeetle's habit:
//! assertions document what the code relies on, and the simulator runs them).
//!
//! How it counts, exactly:
//! 1. Comments and the insides of string and character literals are blanked
//!    out (a small lexer: `//` line comments, `/* */` block comments, `"…"`
//!    strings with `\` escapes, raw strings `r"…"`/`r#"…"#`, and `'x'` /
//!    `'\x'` character literals; a `'` that starts neither is a lifetime).
//! 2. Test-only code is cut out: every item carrying a `#[cfg(test)]`
//!    attribute, from the attribute to the `}` that closes the first `{`
//!    after it (or to a `;` met before any `{`). That removes the
//!    `#[cfg(test)] mod tests { … }` at the end of a file and any other
//!    test-only item.
//! 3. A function is the keyword `fn` (as a whole word) followed by
//!    whitespace and an identifier: free functions, methods, trait methods
//!    and nested functions count; closures and `fn(…)` pointer types do not.
//! 4. An assertion is one of the macro names `assert!`, `assert_eq!`,
//!    `assert_ne!`, `debug_assert!`, `debug_assert_eq!`, `debug_assert_ne!`,
//!    as a whole word followed directly by `!`.
//!
//! The test prints the counts per file and in total, and fails when the
//! total of assertions is below 1.5 times the total of functions.

use std::path::{Path, PathBuf};

/// Assertions per function required on average.
const MIN_DENSITY: f64 = 1.5;

const ASSERT_MACROS: [&str; 6] = ["assert", "assert_eq", "assert_ne", "debug_assert", "debug_assert_eq", "debug_assert_ne"];

/// The files measured, in a stable order.
fn measured_files() -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for dir in ["store", "targets"] {
        let mut in_dir: Vec<PathBuf> = std::fs::read_dir(src.join(dir))
            .unwrap_or_else(|error| panic!("reading {dir}: {error}"))
            .map(|entry| entry.expect("directory entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
            .collect();
        in_dir.sort();
        files.extend(in_dir);
    }
    files.push(src.join("exception_table.rs"));
    files
}

/// `source` with comments and literal contents replaced by spaces (newlines kept).
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !chars.get(i.wrapping_sub(1)).is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string: r"…" or r#"…"#, closed by a quote and as many hashes.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            out.push('r');
            out.push_str(&" ".repeat(j - i));
            i = j + 1;
            while i < chars.len() {
                if chars[i] == '"' && (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')) {
                    out.push_str(&" ".repeat(hashes + 1));
                    i += hashes + 1;
                    break;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && next == Some('\\') {
            // '\n', '\'', '\u{..}': up to the closing quote.
            out.push_str("  ");
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                out.push(' ');
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            out.push_str("   ");
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// `code` without the items marked `#[cfg(test)]`.
fn without_test_items(code: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let item = &rest[at + MARK.len()..];
        let mut depth = 0usize;
        let mut end = item.len();
        for (offset, c) in item.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = offset + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = offset + 1;
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

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The identifier-like words of `code`, each with the character after it.
fn words(code: &str) -> Vec<(&str, Option<char>, &str)> {
    let mut found = Vec::new();
    let mut start = None;
    for (offset, c) in code.char_indices().chain(std::iter::once((code.len(), ' '))) {
        match (start, is_ident_char(c)) {
            (None, true) => start = Some(offset),
            (Some(from), false) => {
                let after = &code[offset..];
                found.push((&code[from..offset], after.chars().next(), after));
                start = None;
            }
            _ => {}
        }
    }
    found
}

/// `(functions, assertions)` in `source`, counted as the module doc says.
fn count(source: &str) -> (usize, usize) {
    let code = without_test_items(&code_only(source));
    let mut functions = 0;
    let mut assertions = 0;
    for (word, next, after) in words(&code) {
        if word == "fn" && next.is_some_and(char::is_whitespace) && after.trim_start().starts_with(|c: char| c.is_alphabetic() || c == '_') {
            functions += 1;
        }
        if next == Some('!') && ASSERT_MACROS.contains(&word) {
            assertions += 1;
        }
    }
    (functions, assertions)
}

#[test]
fn the_counter_counts_what_its_doc_says() {
    let source = r#"
        // assert!(in a comment) fn not_a_function
        fn one() { assert!(true, "fn two() {}"); let _ = |x: u32| x; debug_assert_eq!(1, 1); }
        struct S { f: fn(u32) -> u32 }
        impl S { pub(crate) fn method(&self) -> char { my_assert!(); '{' } }
        #[cfg(test)]
        mod tests { fn hidden() { assert!(false); } }
    "#;
    assert_eq!(count(source), (2, 2));
}

#[test]
fn engine_core_has_at_least_one_and_a_half_assertions_per_function() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (mut functions, mut assertions) = (0, 0);
    println!("{:<32} {:>9} {:>10} {:>8}", "file", "functions", "assertions", "density");
    for path in measured_files() {
        let source = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
        let (f, a) = count(&source);
        let name = path.strip_prefix(root).unwrap_or(&path).display().to_string();
        println!("{name:<32} {f:>9} {a:>10} {:>8.2}", a as f64 / f.max(1) as f64);
        functions += f;
        assertions += a;
    }
    let density = assertions as f64 / functions.max(1) as f64;
    println!("{:<32} {functions:>9} {assertions:>10} {density:>8.2}", "total");
    assert!(functions > 0, "no functions found: are the paths right?");
    assert!(density >= MIN_DENSITY, "{assertions} assertions over {functions} functions: density {density:.2} is below {MIN_DENSITY}");
}
