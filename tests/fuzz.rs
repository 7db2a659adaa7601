//! Mutation fuzzing of the plan reader and checker, on stable Rust.
//!
//! Seeds are the example plans (`plans/*.yaml`) and the fixtures of invalid and hostile
//! input; a seeded generator mutates them (bytes, lines, splices from other seeds, and
//! "interesting" values: control characters, huge numbers, long names, cycles, aliases,
//! a byte order mark). Each input goes through what `dr validate` and `dr graph` do
//! (`load_and_build`, with and without cluster facts, then rendering every diagnostic
//! and the graph) inside `catch_unwind`, and must:
//!
//! - not panic (and not abort: an abort kills this test binary, which fails the test);
//! - finish in under 5 s and peak under 1 GiB of resident memory;
//! - give every error a `file:line:col` location, and render without raw control characters.
//!
//! A few mutated inputs also go through the `dr` binary under a 1 GiB address-space
//! limit, which must exit with 0 or 1.
//!
//! CI runs it for `DRPLAN_FUZZ_SECS` (default 20) seconds. For a longer local run:
//! `DRPLAN_FUZZ_SECS=600 DRPLAN_FUZZ_SEED=$RANDOM cargo test --release --test fuzz -- --nocapture`.
//! A failing input is written to `target/tmp/fuzz/crash-SEED-N.yaml` with the seed in
//! the message, so `DRPLAN_FUZZ_SEED=SEED` replays the run.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const TIME_LIMIT: Duration = Duration::from_secs(5);
const MEMORY_LIMIT_KIB: u64 = 1 << 20;
const SUBPROCESS_RUNS: usize = 4;

/// xorshift64*: small, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Fragments worth inserting: YAML syntax, control sequences, out-of-range values.
const INTERESTING: &[&str] = &[
    "\u{1b}[2J\u{1b}[31m",
    "\u{1b}]0;title\u{7}",
    "\u{9b}",
    "\u{202e}",
    "\u{feff}",
    "\r",
    "\t",
    ": ",
    "- ",
    "{",
    "}",
    "[",
    "]",
    "&a ",
    "*a",
    "!!str ",
    "'",
    "\"",
    "# ",
    "\n  ",
    "\n- ",
    "18446744073709551616",
    "99999999999999999999Ei",
    "999999999h",
    "-1",
    "0",
    "1e309",
    "null",
    "~",
    "<<: *a",
    "after: [",
    "Upper_Case/Name",
    "../../x\\u0000",
    "\\e[2J",
    "ü☕",
];

fn seeds() -> Vec<(String, Vec<u8>, Option<PathBuf>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seeds = Vec::new();
    for dir in ["plans", "tests/fixtures/invalid", "tests/fixtures/hostile"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for file in files {
            // An example plan comes with its cluster state beside it, for expanding intents.
            let cluster = file.with_extension("");
            let cluster = if cluster.is_dir() { Some(cluster) } else { None };
            seeds.push((file.display().to_string(), std::fs::read(&file).unwrap(), cluster));
        }
    }
    seeds
}

fn line_bounds(data: &[u8], rng: &mut Rng) -> (usize, usize) {
    let starts: Vec<usize> =
        std::iter::once(0).chain(data.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1)).collect();
    let a = *rng.pick(&starts);
    let b = starts.iter().copied().find(|&s| s > a).unwrap_or(data.len());
    (a, b)
}

fn mutate(data: &mut Vec<u8>, seeds: &[(String, Vec<u8>, Option<PathBuf>)], rng: &mut Rng) {
    for _ in 0..=rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(10) {
            0 if !data.is_empty() => {
                let i = at.min(data.len() - 1);
                data[i] ^= 1 << rng.below(8);
            }
            1 => data.insert(at, rng.next() as u8),
            2 => {
                let end = (at + rng.below(16)).min(data.len());
                data.drain(at..end);
            }
            3 => {
                let (a, b) = line_bounds(data, rng);
                let line = data[a..b].to_vec();
                for _ in 0..=rng.below(3) {
                    data.splice(a..a, line.iter().copied());
                }
            }
            4 => {
                let (a, b) = line_bounds(data, rng);
                data.drain(a..b);
            }
            5 => {
                // A line of another seed, at the start of a line of this one.
                let other = &rng.pick(seeds).1;
                let (a, b) = line_bounds(other, rng);
                let line = other[a..b].to_vec();
                let (c, _) = line_bounds(data, rng);
                data.splice(c..c, line);
            }
            6 => {
                // Replace a run of digits with a huge or odd number.
                let numbers = ["18446744073709551616", "0", "4294967296", "9223372036854775808", "1.5", "-3"];
                if let Some(start) = data.iter().skip(at).position(u8::is_ascii_digit).map(|p| p + at) {
                    let end = data[start..].iter().position(|b| !b.is_ascii_digit()).map_or(data.len(), |p| p + start);
                    data.splice(start..end, rng.pick(&numbers).bytes());
                }
            }
            7 => {
                // A long name where a value starts.
                if let Some(colon) = data.iter().skip(at).position(|&b| b == b':').map(|p| p + at + 1) {
                    let long = "n".repeat(*rng.pick(&[63, 64, 253, 254, 5000]));
                    data.splice(colon..colon, format!(" {long}").into_bytes());
                }
            }
            8 => {
                // A dependency on a step that may come later (cycles) or not exist.
                let (c, _) = line_bounds(data, rng);
                let ids = ["restore-cassandra", "scale-down", "s0", "a", "missing", "restore-cassandra/scale-down"];
                data.splice(c..c, format!("    after: [{}]\n", rng.pick(&ids)).into_bytes());
            }
            _ => data.splice(at..at, rng.pick(INTERESTING).bytes()).for_each(drop),
        }
    }
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("VmHWM: 0 kB");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// C0 controls other than line feed and tab, DEL, C1, and the right-to-left override:
/// written independently of `drplan::diag::escape`, so the two check each other.
fn has_raw_control(text: &str) -> bool {
    text.chars().any(|c| c != '\n' && c != '\t' && (c < ' ' || ('\u{7f}'..='\u{9f}').contains(&c) || c == '\u{202e}'))
}

/// Everything `dr validate` and `dr graph` do with one input; `Err` says what broke.
fn check_in_process(path: &Path, cluster: Option<&Path>) -> Result<(), String> {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let started = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut problems = Vec::new();
        // As `dr validate` without and with cluster facts, and as `dr graph` without.
        let mut runs = vec![(None, false), (None, true)];
        runs.extend(cluster.map(|c| (Some(c), false)));
        for (facts, intents_only) in runs {
            let (built, diags) = drplan::cli::load_and_build(path, facts, intents_only);
            for diag in diags.iter().filter(|d| d.is_error()) {
                let located =
                    diag.location().is_some_and(|l| l.rsplit(':').take(2).all(|n| n.parse::<usize>().is_ok()));
                if !located && diag.code != "drplan::input::too_large" {
                    problems.push(format!("error without file:line:col: {} {}", diag.code, diag.message));
                }
                if has_raw_control(&diag.render(false)) {
                    problems.push(format!("raw control character in the rendered {}", diag.code));
                }
            }
            if let Some((_, graph)) = built {
                for format in [
                    drplan::graph::render::Format::Text,
                    drplan::graph::render::Format::Dot,
                    drplan::graph::render::Format::Mermaid,
                ] {
                    if has_raw_control(&drplan::graph::render::render(&graph, format)) {
                        problems.push(format!("raw control character in dr graph --format {format:?}"));
                    }
                }
            }
        }
        problems
    }));
    let elapsed = started.elapsed();
    let mut problems = match outcome {
        Ok(problems) => problems,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            vec![format!("panic: {message}")]
        }
    };
    if elapsed > TIME_LIMIT {
        problems.push(format!("took {elapsed:?}"));
    }
    let peak = peak_rss_kib();
    if peak > MEMORY_LIMIT_KIB {
        problems.push(format!("peak resident memory {peak} KiB"));
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

/// The binary, as users run it, under a 1 GiB address-space limit: exit 0 or 1 only.
fn check_subprocess(path: &Path) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(env!("CARGO_BIN_EXE_dr"));
    command.arg("validate").arg(path).env("NO_COLOR", "1");
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 1 << 30, rlim_max: 1 << 30 };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let out = command.output().map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    let code = out.status.code();
    if !matches!(code, Some(0 | 1)) {
        return Err(format!("dr validate exited with {:?}: {}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    if elapsed > TIME_LIMIT {
        return Err(format!("dr validate took {elapsed:?}"));
    }
    Ok(())
}

#[test]
fn mutated_plans_get_diagnostics_never_crashes() {
    let budget = Duration::from_secs(std::env::var("DRPLAN_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20));
    let seed: u64 = std::env::var("DRPLAN_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_d1a9);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz");
    std::fs::create_dir_all(&dir).unwrap();
    let seeds = seeds();
    let mut rng = Rng(seed | 1);
    let mut failures = Vec::new();
    let started = Instant::now();
    let mut iterations = 0usize;
    // The seeds themselves first, then mutants until the time budget is spent.
    while iterations < seeds.len() || started.elapsed() < budget {
        let (name, original, cluster) = &seeds[iterations % seeds.len()];
        let mut data = original.clone();
        if iterations >= seeds.len() {
            mutate(&mut data, &seeds, &mut rng);
        }
        let path = dir.join(format!("input-{}.yaml", iterations % 2));
        std::fs::write(&path, &data).unwrap();
        let mut result = check_in_process(&path, cluster.as_deref());
        if result.is_ok()
            && iterations >= seeds.len()
            && iterations.is_multiple_of(50)
            && iterations / 50 <= SUBPROCESS_RUNS
        {
            result = check_subprocess(&path);
        }
        if let Err(problem) = result {
            let saved = dir.join(format!("crash-{seed}-{iterations}.yaml"));
            std::fs::write(&saved, &data).unwrap();
            failures.push(format!("{} (mutant of {name}): {problem}", saved.display()));
        }
        iterations += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "fuzz: seed {seed}, {iterations} inputs in {secs:.1} s ({:.0}/s), {} failures",
        iterations as f64 / secs,
        failures.len()
    );
    assert!(iterations > seeds.len(), "no mutant ran within {budget:?}");
    assert!(failures.is_empty(), "DRPLAN_FUZZ_SEED={seed}:\n{}", failures.join("\n"));
}
