//! The documentation cannot drift from the code or from itself: every relative link in
//! README.md and docs/*.md points at a file that exists and, with a `#fragment`, at a heading
//! that GitHub renders with that anchor; docs/configuration.md lists exactly the long flags and
//! environment twins that the compiled binary's `--help` shows, one section per command; and the
//! README stays a front door (its size, the demo and the test command).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ecr-secret-refresher");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The stop hook warns above this; the manual lives in docs/.
const README_BUDGET: usize = 12_288;

/// README.md and every page in docs/, as paths relative to the repository root.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("readable docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| p.strip_prefix(ROOT).expect("under the root").to_path_buf())
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path))
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Lines outside fenced code blocks, with their 1-based numbers.
fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push((i + 1, line));
        }
    }
    out
}

/// The anchor GitHub gives a heading (github-slugger): the rendered text, lower-cased, with
/// everything but letters, digits, `-`, `_` and spaces removed, and spaces turned into `-`.
fn slug(heading: &str) -> String {
    let text = strip_links(heading).replace(['`', '*'], "");
    text.trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// `[text](target)` becomes `text`.
fn strip_links(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find("](").and_then(|close| {
            after[close + 2..]
                .find(')')
                .map(|end| (close, close + 2 + end + 1))
        }) {
            Some((close, end)) => {
                out.push_str(&after[..close]);
                rest = &after[end..];
            }
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Every anchor a page's headings produce, duplicates numbered as GitHub does (`x`, `x-1`).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose(text) {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let heading = heading.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let base = slug(heading);
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// The targets of the inline links `[text](target)` on a line.
fn link_targets(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let end = after.find(')').unwrap_or(after.len());
        // A title (`(url "title")`) follows a space.
        let target = after[..end].split_whitespace().next().unwrap_or("");
        out.push(target.to_string());
        rest = &after[end..];
    }
    out
}

fn is_external(target: &str) -> bool {
    target.contains("://") || target.starts_with("mailto:")
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = read(&page);
        let dir = page.parent().unwrap_or(Path::new(""));
        for (n, line) in prose(&text) {
            for target in link_targets(line) {
                if target.is_empty() || is_external(&target) {
                    continue;
                }
                checked += 1;
                let (file, fragment) = match target.split_once('#') {
                    Some((f, a)) => (f, Some(a)),
                    None => (target.as_str(), None),
                };
                let resolved = if file.is_empty() {
                    page.clone()
                } else {
                    normalize(&dir.join(file))
                };
                let where_ = format!("{}:{n}: ({target})", page.display());
                if !Path::new(ROOT).join(&resolved).exists() {
                    broken.push(format!("{where_}: no file {}", resolved.display()));
                    continue;
                }
                if let Some(fragment) = fragment {
                    if resolved.extension().is_none_or(|e| e != "md") {
                        broken.push(format!(
                            "{where_}: an anchor into a file that is not Markdown"
                        ));
                        continue;
                    }
                    let known = anchors(&read(&resolved));
                    if !known.contains(fragment) {
                        broken.push(format!(
                            "{where_}: {} has no heading with anchor #{fragment}; its anchors: {}",
                            resolved.display(),
                            known.into_iter().collect::<Vec<_>>().join(", ")
                        ));
                    }
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} links found: is the link parser broken?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// `docs/../README.md` becomes `README.md`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn the_slugs_match_githubs() {
    // As GitHub renders these headings of this repository's pages.
    for (heading, anchor) in [
        (
            "doctor --image: why does this image not pull?",
            "doctor---image-why-does-this-image-not-pull",
        ),
        ("`Client.Timeout exceeded`", "clienttimeout-exceeded"),
        ("How `doctor --image` works", "how-doctor---image-works"),
        (
            "Per-ServiceAccount roles (KEP-4412)",
            "per-serviceaccount-roles-kep-4412",
        ),
        (
            "`ecr-secret-refresher` (refresh)",
            "ecr-secret-refresher-refresh",
        ),
        ("The sandbox (pause) image", "the-sandbox-pause-image"),
        ("[Install](docs/install.md) first", "install-first"),
    ] {
        assert_eq!(slug(heading), anchor, "{heading}");
    }
    let text = "# A\n## Same\n```\n## Not a heading\n```\n### Same\n";
    assert_eq!(
        anchors(text).into_iter().collect::<Vec<_>>(),
        ["a", "same", "same-1"]
    );
}

/// Long flag -> its environment twin, as one command's `--help` shows them.
type Flags = BTreeMap<String, Option<String>>;

/// Runs `BIN <command> --help` with an empty environment (clap shows the values of set
/// environment variables) and returns its flags and subcommands.
fn help(command: &[String]) -> (Flags, Vec<String>) {
    let out = Command::new(BIN)
        .args(command)
        .arg("--help")
        .env_clear()
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "{command:?} --help failed");
    let text = String::from_utf8(out.stdout).expect("UTF-8 help");
    let mut flags = Flags::new();
    let mut subcommands = Vec::new();
    let mut current: Option<String> = None;
    let mut in_commands = false;
    for line in text.lines() {
        if line == "Commands:" {
            in_commands = true;
            continue;
        }
        if in_commands {
            match line
                .strip_prefix("  ")
                .and_then(|l| l.split_whitespace().next())
            {
                Some(name) if !line.starts_with("   ") => {
                    if name != "help" {
                        subcommands.push(name.to_string());
                    }
                    continue;
                }
                _ => in_commands = false,
            }
        }
        let trimmed = line.trim_start();
        // Flag lines are indented 2 (`  -h, --help`) or 6 (`      --namespaces <NAMESPACES>`);
        // descriptions, 10.
        if line.len() - trimmed.len() <= 6 && trimmed.starts_with('-') {
            if let Some(long) = trimmed.split([',', ' ']).find(|w| w.starts_with("--")) {
                current = Some(long.to_string());
                flags.insert(long.to_string(), None);
            }
            continue;
        }
        if let (Some(flag), Some(at)) = (&current, trimmed.find("[env: ")) {
            let env = trimmed[at + 6..]
                .split('=')
                .next()
                .unwrap_or("")
                .to_string();
            flags.insert(flag.clone(), Some(env));
        }
    }
    (flags, subcommands)
}

/// Every command path (`[]`, `["doctor"]`, ...) and its help's flags, found from the top.
fn commands() -> BTreeMap<Vec<String>, Flags> {
    let mut out = BTreeMap::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let (flags, subs) = help(&path);
        for sub in subs {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p);
        }
        out.insert(path, flags);
    }
    out
}

/// One `## `ecr-secret-refresher ...`` section of configuration.md.
struct Section {
    flags: Flags,
    prose: String,
    takes_refresh_flags: bool,
}

/// configuration.md's command sections: the command path from the heading, and the flag
/// table rows (`| `--flag` | `ENV` or — | ...`) up to the next `## ` heading.
fn documented() -> BTreeMap<Vec<String>, Section> {
    let text = read(Path::new("docs/configuration.md"));
    let mut out: BTreeMap<Vec<String>, Section> = BTreeMap::new();
    let mut current: Option<Vec<String>> = None;
    for (n, line) in prose(&text) {
        if let Some(heading) = line.strip_prefix("## ") {
            current = heading
                .strip_prefix("`ecr-secret-refresher")
                .and_then(|rest| rest.split('`').next())
                .map(|rest| rest.split_whitespace().map(str::to_string).collect());
            if let Some(path) = &current {
                assert!(
                    !out.contains_key(path),
                    "configuration.md:{n}: a second section for {path:?}"
                );
                out.insert(
                    path.clone(),
                    Section {
                        flags: Flags::new(),
                        prose: String::new(),
                        takes_refresh_flags: false,
                    },
                );
            }
            continue;
        }
        let Some(section) = current.as_ref().and_then(|p| out.get_mut(p)) else {
            continue;
        };
        // The sentence may wrap: look at the section's prose joined into one line.
        section.prose.push(' ');
        section.prose.push_str(line.trim());
        section.takes_refresh_flags = section
            .prose
            .contains("also takes every flag of the refresh");
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with("`--") {
            continue;
        }
        let flag = cells[1].trim_matches('`').to_string();
        let env = match cells[2] {
            "—" => None,
            e if e.starts_with('`') && e.ends_with('`') => Some(e.trim_matches('`').to_string()),
            other => panic!(
                "configuration.md:{n}: the environment cell of {flag} must be `NAME` or —, not {other}"
            ),
        };
        assert!(
            section.flags.insert(flag.clone(), env).is_none(),
            "configuration.md:{n}: {flag} listed twice in one section"
        );
    }
    out
}

fn describe(flags: &Flags) -> String {
    flags
        .iter()
        .map(|(f, e)| match e {
            Some(e) => format!("{f} ({e})"),
            None => format!("{f} (no environment twin)"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn configuration_lists_exactly_the_flags_help_shows() {
    let helps = commands();
    let docs = documented();
    let name = |path: &Vec<String>| {
        std::iter::once("ecr-secret-refresher".to_string())
            .chain(path.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let top = &helps[&Vec::new()];
    assert!(
        top.len() > 30 && top.contains_key("--namespaces"),
        "the help parser found too few flags: {top:?}"
    );
    let mut problems = Vec::new();
    for (path, shown) in &helps {
        // A subcommand's own flags: those the top level does not show (the global ones are
        // documented once, in the refresh section).
        let own: Flags = if path.is_empty() {
            shown.clone()
        } else {
            shown
                .iter()
                .filter(|(f, _)| !top.contains_key(*f))
                .map(|(f, e)| (f.clone(), e.clone()))
                .collect()
        };
        let Some(section) = docs.get(path) else {
            problems.push(format!(
                "no section \"## `{}`\" in docs/configuration.md: add one with a table of its own flags ({})",
                name(path),
                describe(&own)
            ));
            continue;
        };
        let missing: Flags = own
            .iter()
            .filter(|(f, e)| section.flags.get(*f) != Some(e))
            .map(|(f, e)| (f.clone(), e.clone()))
            .collect();
        let extra: Flags = section
            .flags
            .iter()
            .filter(|(f, e)| own.get(*f) != Some(e))
            .map(|(f, e)| (f.clone(), e.clone()))
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "`{}`: --help shows {} but docs/configuration.md does not list it so",
                name(path),
                describe(&missing)
            ));
        }
        if !extra.is_empty() {
            problems.push(format!(
                "`{}`: docs/configuration.md lists {}, which --help does not show",
                name(path),
                describe(&extra)
            ));
        }
        if !path.is_empty() {
            let globals: BTreeSet<&String> = top.keys().filter(|f| *f != "--version").collect();
            let inherited = globals.iter().all(|f| shown.contains_key(*f));
            if section.takes_refresh_flags && !inherited {
                problems.push(format!(
                    "`{}`: docs/configuration.md says it takes every flag of the refresh, but its --help lacks some",
                    name(path)
                ));
            }
            if !section.takes_refresh_flags && inherited {
                problems.push(format!(
                    "`{}`: it takes every flag of the refresh; say so in its section (\"It also takes every flag of the refresh above.\")",
                    name(path)
                ));
            }
        }
    }
    for path in docs.keys() {
        if !helps.contains_key(path) {
            problems.push(format!(
                "docs/configuration.md documents `{}`, which --help does not list as a command",
                name(path)
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_readme_is_a_front_door() {
    let readme = read(Path::new("README.md"));
    assert!(
        readme.len() <= README_BUDGET,
        "README.md is {} bytes, over {README_BUDGET}: move detail into docs/",
        readme.len()
    );
    for must in [
        "```sh\nscripts/demo\n```",
        "```sh\nscripts/test\n```",
        "```mermaid",
    ] {
        assert!(readme.contains(must), "README.md lacks {must:?}");
    }
    for page in pages().iter().skip(1) {
        let link = format!("({})", page.display());
        assert!(
            readme.contains(&link),
            "README.md does not link {}",
            page.display()
        );
    }
}

#[test]
fn every_docs_page_starts_with_its_task() {
    for page in pages().iter().skip(1) {
        let text = read(page);
        let mut lines = text.lines();
        let title = lines.next().unwrap_or("");
        assert!(
            title.starts_with("# "),
            "{} must start with a '# Title' line",
            page.display()
        );
        let first = lines.find(|l| !l.trim().is_empty()).unwrap_or("");
        assert!(
            !first.starts_with('#') && !first.starts_with('|') && !first.starts_with("```"),
            "{}: the title must be followed by a sentence that says what the page is for",
            page.display()
        );
    }
}
