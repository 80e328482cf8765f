//! The documents a new user reads first: what they link to is in the
//! repository, the licenses Cargo.toml declares are there, and the README
//! says how to get the binary and what it does not speak.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The targets of `[text](target)` links in a Markdown text.
fn links(md: &str) -> Vec<&str> {
    md.split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .collect()
}

/// Issue 19 item 20: the README pointed at ../shared/SEED.md, outside the
/// repository. Every relative link of the README and docs/ resolves to a
/// file of the repository.
#[test]
fn readme_and_docs_link_only_to_files_in_the_repository() {
    let mut docs = vec!["README.md".to_string()];
    for e in std::fs::read_dir(repo().join("docs")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") {
            docs.push(format!("docs/{name}"));
        }
    }
    for doc in &docs {
        let text = read(doc);
        assert!(
            !text.contains("shared/SEED.md"),
            "{doc} names ../shared/SEED.md"
        );
        let dir = repo().join(doc).parent().unwrap().to_path_buf();
        for link in links(&text) {
            if link.contains("://") || link.starts_with('#') {
                continue;
            }
            let file = link.split('#').next().unwrap();
            let target = dir.join(file);
            assert!(target.exists(), "{doc} links to {link}, which is not there");
            let target = target.canonicalize().unwrap();
            assert!(
                target.starts_with(repo().canonicalize().unwrap()),
                "{doc} links to {link}, outside the repository"
            );
        }
    }
    assert!(read("README.md").contains("(docs/article.md)"));
}

/// Cargo.toml declares `MIT OR Apache-2.0`; the texts were missing.
#[test]
fn the_declared_licenses_are_in_the_repository() {
    let cargo = read("Cargo.toml");
    assert!(cargo.contains("license = \"MIT OR Apache-2.0\""), "{cargo}");
    let mit = read("LICENSE-MIT");
    assert!(mit.contains("Copyright (c) the uringfetch developers"));
    assert!(mit.contains("Permission is hereby granted, free of charge"));
    let apache = read("LICENSE-APACHE");
    assert!(
        apache.contains("Apache License\n                           Version 2.0, January 2004")
    );
    assert!(apache.contains("END OF TERMS AND CONDITIONS"));
    assert!(
        Path::new(&repo().join("LICENSE-APACHE"))
            .metadata()
            .unwrap()
            .len()
            > 10_000
    );
}

/// A new user is told how to get `uringfetch` on the PATH, what serves the
/// examples' port 8080, how to trust a server's certificate, and how to
/// speak HTTP/2.
#[test]
fn the_readme_answers_a_new_users_first_questions() {
    let readme = read("README.md");
    for said in [
        "cargo install --path .",
        "target/release/uringfetch",
        "uringfetch serve --addr 127.0.0.1:8080 --delay 0",
        "--cacert ca.pem https://",
        "--http2-prior-knowledge",
    ] {
        assert!(readme.contains(said), "the README does not say `{said}`");
    }
}
