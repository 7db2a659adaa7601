//! [`LocalDirStore`]: runs and locks as files under a directory (`.drplan/` by default).
//!
//! Layout: `<root>/runs/<run_id>/run.json`, `<root>/runs/<run_id>/journal.jsonl` and
//! `<root>/locks/<key>.lock`.
//!
//! A save appends one line to the journal (the header and the step records that changed,
//! see [`super::journal`]) and fsyncs it, so a transition costs the same in a run of ten
//! steps or of ten thousand. When the journal outgrows the base, the next save compacts:
//! the whole record is written to `run.json`, which names the last journal line it holds,
//! and the journal is removed. Whole-file writes are crash safe: the new content goes to
//! a temp file in the same directory, is fsynced, renamed over the target and the
//! directory is fsynced, so `run.json` is always either the old record or the new one.
//! Temp files start with `.` and are never read.
//!
//! Locks are files holding the holder's [`LockInfo`], made exclusive by `flock(2)` (via
//! `File::try_lock`) rather than by the file's existence. The kernel drops an flock when
//! its process dies, so after a SIGKILL the next `dr` gets the lock, and deciding "the
//! holder is dead, take over" happens while holding the flock: two contenders cannot
//! both take over (the race a create-then-check-pid scheme has). On top of that, a lock
//! file whose flock is free is only taken over if it names a dead pid on this host; one
//! naming another host or a live pid is still reported as [`StoreError::Locked`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::integrity::{seal_value, unseal};
use super::journal::{JOURNAL_FILE, Replayed, encode_entry, replay};
use super::record::{RunRecord, RunSummary, StepRecord};
use super::redact::value_without_secrets;
use super::store::{LockGuard, LockInfo, StateStore, StoreError, this_host};

const RUN_FILE: &str = "run.json";

/// How often to retry when a released lock file is unlinked under us.
const LOCK_ATTEMPTS: usize = 5;

/// How long to wait for a holder that has the flock but has not yet written its info.
const HOLDER_READ_ATTEMPTS: usize = 20;
const HOLDER_READ_PAUSE: Duration = Duration::from_millis(5);

/// The journal grows to at least this many bytes (or the base's size, if larger) before
/// a save compacts it, so compaction costs a constant share of the bytes journaled.
const COMPACT_AFTER_BYTES: u64 = 1 << 20;

/// A [`StateStore`] in a local directory.
#[derive(Clone, Debug)]
pub struct LocalDirStore {
    root: PathBuf,
    /// What this process last wrote of each run it saves, to journal only what changed.
    journals: Arc<Mutex<HashMap<String, JournalState>>>,
    failpoint: JournalFailpoint,
}

impl LocalDirStore {
    pub const DEFAULT_ROOT: &'static str = ".drplan";

    pub fn new(root: impl Into<PathBuf>) -> LocalDirStore {
        LocalDirStore { root: root.into(), journals: Arc::default(), failpoint: JournalFailpoint::from_env() }
    }

    /// The store at `.drplan/` in the current directory.
    pub fn in_current_dir() -> LocalDirStore {
        LocalDirStore::new(Self::DEFAULT_ROOT)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// Where run `run_id` is kept; the id is checked so it cannot point outside the store.
    pub fn run_path(&self, run_id: &str) -> Result<PathBuf, StoreError> {
        validate_run_id(run_id)?;
        Ok(self.runs_dir().join(run_id).join(RUN_FILE))
    }

    /// The lock file for `key`.
    pub fn lock_path(&self, key: &str) -> PathBuf {
        self.root.join("locks").join(format!("{}.lock", lock_file_stem(key)))
    }
}

impl StateStore for LocalDirStore {
    fn lock(&self, key: &str, info: &LockInfo) -> Result<Box<dyn LockGuard>, StoreError> {
        let path = self.lock_path(key);
        let dir = path.parent().expect("lock path has a parent");
        fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
        for _ in 0..LOCK_ATTEMPTS {
            if let Some(guard) = try_lock_file(&path, info)? {
                return Ok(Box::new(guard));
            }
        }
        let race = io::Error::other("the lock file kept being replaced while locking it; try again");
        Err(io_error("lock", &path, race))
    }

    fn create_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let path = self.run_path(&run.run_id)?;
        let bytes = sealed_without_secrets(run, 0)?;
        let runs_dir = self.runs_dir();
        fs::create_dir_all(&runs_dir).map_err(|e| io_error("create", &runs_dir, e))?;
        let run_dir = path.parent().expect("run path has a parent");
        // An existing directory without run.json is left by a creation that crashed
        // before its rename; it is reused, and run.json itself decides "exists".
        match fs::create_dir(run_dir) {
            Ok(()) => sync_dir(&runs_dir)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error("create", run_dir, e)),
        }
        // An existing run keeps its journal: checked before the journal is touched.
        if path.exists() {
            return Err(StoreError::RunExists { run_id: run.run_id.clone(), path: path.clone() });
        }
        // A journal left by an earlier run of the same id cannot exist (ids are fresh),
        // but one left by a crashed creation must not be replayed onto this record.
        remove_if_exists(&path.with_file_name(JOURNAL_FILE))?;
        create_atomically(&path, &bytes).map_err(|e| match e {
            StoreError::Io { source, .. } if source.kind() == io::ErrorKind::AlreadyExists => {
                StoreError::RunExists { run_id: run.run_id.clone(), path: path.clone() }
            }
            other => other,
        })?;
        let state = JournalState::after_compaction(&path, run, 0, bytes.len() as u64)?;
        self.journals().insert(run.run_id.clone(), state);
        Ok(())
    }

    fn save_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.save_with_hint(run, None)
    }

    fn save_run_changed(&self, run: &RunRecord, changed: &BTreeSet<String>) -> Result<(), StoreError> {
        self.save_with_hint(run, Some(changed))
    }

    fn load_run(&self, run_id: &str) -> Result<RunRecord, StoreError> {
        let path = self.run_path(run_id)?;
        Ok(self.read_run(run_id, &path)?.record)
    }

    fn list_runs(&self) -> Result<Vec<RunSummary>, StoreError> {
        let runs_dir = self.runs_dir();
        let entries = match fs::read_dir(&runs_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("list", &runs_dir, e)),
        };
        let mut summaries = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("list", &runs_dir, e))?;
            let Some(run_id) = entry.file_name().to_str().map(str::to_string) else { continue };
            if run_id.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            summaries.push(self.summarize(&run_id, &entry.path()));
        }
        summaries.sort_by(|a, b| (&b.created_at, &b.run_id).cmp(&(&a.created_at, &a.run_id)));
        Ok(summaries)
    }
}

impl LocalDirStore {
    fn summarize(&self, run_id: &str, run_dir: &Path) -> RunSummary {
        match self.load_run(run_id) {
            Ok(record) => RunSummary::of(&record),
            Err(problem) => RunSummary::corrupt(run_id, problem.to_string(), modified_at(run_dir)),
        }
    }
}

/// The bytes to store for `run`: a copy with Secret data removed from the plan and from
/// everything steps captured, sealed with its checksum and the journal line it reaches.
fn sealed_without_secrets(run: &RunRecord, journal_seq: u64) -> Result<Vec<u8>, StoreError> {
    value_without_secrets(run)
        .and_then(|value| seal_value(value, journal_seq))
        .map_err(|source| StoreError::Encode { run_id: run.run_id.clone(), source })
}

// ---------------------------------------------------------------------------
// Journaled saves

/// What this process knows it wrote of one run, to append only what changed.
#[derive(Debug)]
struct JournalState {
    /// Identity of the `run.json` the journal continues: a compaction by another
    /// process replaces the file, and this state is then stale.
    base_inode: u64,
    base_len: u64,
    /// Last sequence number written (in the base or the journal).
    seq: u64,
    /// Bytes of whole lines in the journal; a longer file has a torn tail to cut off.
    journal_len: u64,
    /// The step records as last written (unredacted, as the caller holds them).
    written: BTreeMap<String, StepRecord>,
}

impl JournalState {
    fn after_compaction(path: &Path, run: &RunRecord, seq: u64, base_len: u64) -> Result<JournalState, StoreError> {
        let base_inode = fs::metadata(path).map_err(|e| io_error("read", path, e))?.ino();
        Ok(JournalState { base_inode, base_len, seq, journal_len: 0, written: run.steps.clone() })
    }

    /// Whether the files are still as this state left them (nobody else saved the run).
    fn matches_disk(&self, path: &Path) -> Result<bool, StoreError> {
        let base_inode = fs::metadata(path).map_err(|e| io_error("read", path, e))?.ino();
        Ok(base_inode == self.base_inode && journal_file_len(path)? == self.journal_len)
    }
}

impl LocalDirStore {
    fn journals(&self) -> std::sync::MutexGuard<'_, HashMap<String, JournalState>> {
        // A panic while holding it leaves plain data, still consistent with the files.
        self.journals.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads `run.json` and replays the journal onto it.
    fn read_run(&self, run_id: &str, path: &Path) -> Result<ReadRun, StoreError> {
        let bytes = fs::read(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::RunNotFound { run_id: run_id.to_string(), path: path.to_path_buf() },
            _ => io_error("read", path, e),
        })?;
        let (base, base_seq) = unseal(path, &bytes)?;
        if base.run_id != run_id {
            // A run directory copied or renamed by hand: resuming it would write to the wrong place.
            let reason = format!("it records run {}, but is stored as run {run_id}", base.run_id);
            return Err(StoreError::Corrupt { path: path.to_path_buf(), reason });
        }
        let journal_path = path.with_file_name(JOURNAL_FILE);
        let journal = match fs::read(&journal_path) {
            Ok(journal) => journal,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_error("read", &journal_path, e)),
        };
        let Replayed { record, seq, valid_len } = replay(&journal_path, base, base_seq, &journal)?;
        Ok(ReadRun { record, seq, journal_len: valid_len, base_len: bytes.len() as u64 })
    }

    fn read_journal_state(&self, run_id: &str, path: &Path) -> Result<JournalState, StoreError> {
        let read = self.read_run(run_id, path)?;
        let base_inode = fs::metadata(path).map_err(|e| io_error("read", path, e))?.ino();
        Ok(JournalState {
            base_inode,
            base_len: read.base_len,
            seq: read.seq,
            journal_len: read.journal_len,
            written: read.record.steps,
        })
    }

    /// Appends `run`'s changes to the journal, or compacts when the journal has grown
    /// past the base (or a step disappeared, which a journal line cannot express).
    /// Saves the run; `hint` (the only steps that can have changed since this process's
    /// last save) is trusted only while the files are as that save left them.
    fn save_with_hint(&self, run: &RunRecord, hint: Option<&BTreeSet<String>>) -> Result<(), StoreError> {
        let path = self.run_path(&run.run_id)?;
        if !path.exists() {
            return Err(StoreError::RunNotFound { run_id: run.run_id.clone(), path });
        }
        let mut journals = self.journals();
        let (state, hint) = match journals.remove(&run.run_id) {
            Some(state) if state.matches_disk(&path)? => (state, hint),
            // First save of this run by this process, or another process wrote it since.
            _ => (self.read_journal_state(&run.run_id, &path)?, None),
        };
        let state = self.save_journaled(&path, run, state, hint)?;
        journals.insert(run.run_id.clone(), state);
        Ok(())
    }

    fn save_journaled(
        &self,
        path: &Path,
        run: &RunRecord,
        state: JournalState,
        hint: Option<&BTreeSet<String>>,
    ) -> Result<JournalState, StoreError> {
        // With a hint, steps were only changed (the executor never drops one): comparing
        // every record of the run on every save was quadratic over a fleet's run.
        let dropped_steps = hint.is_none() && state.written.keys().any(|id| !run.steps.contains_key(id));
        if dropped_steps || state.journal_len >= COMPACT_AFTER_BYTES.max(state.base_len) {
            return self.compact(path, run, state.seq);
        }
        let differs = |id: &str, step: &StepRecord| state.written.get(id) != Some(step);
        let changed: Vec<&str> = match hint {
            Some(hint) => hint
                .iter()
                .filter_map(|id| run.steps.get_key_value(id))
                .filter(|(id, step)| differs(id, step))
                .map(|(id, _)| id.as_str())
                .collect(),
            None => run.steps.iter().filter(|(id, step)| differs(id, step)).map(|(id, _)| id.as_str()).collect(),
        };
        let seq = state.seq + 1;
        let line = encode_entry(seq, run, &changed)
            .map_err(|source| StoreError::Encode { run_id: run.run_id.clone(), source })?;
        let journal_path = path.with_file_name(JOURNAL_FILE);
        append_durably(&journal_path, state.journal_len, &line, &self.failpoint)?;
        let mut state = state;
        for id in changed {
            state.written.insert(id.to_string(), run.steps[id].clone());
        }
        state.seq = seq;
        state.journal_len += line.len() as u64;
        Ok(state)
    }

    /// Writes the whole record as the new base, then drops the journal it now contains.
    fn compact(&self, path: &Path, run: &RunRecord, seq: u64) -> Result<JournalState, StoreError> {
        let bytes = sealed_without_secrets(run, seq)?;
        replace_atomically(path, &bytes)?;
        // A crash here leaves journal lines the base already holds; loading skips them by sequence number.
        remove_if_exists(&path.with_file_name(JOURNAL_FILE))?;
        JournalState::after_compaction(path, run, seq, bytes.len() as u64)
    }
}

struct ReadRun {
    record: RunRecord,
    seq: u64,
    journal_len: u64,
    base_len: u64,
}

fn journal_file_len(run_path: &Path) -> Result<u64, StoreError> {
    let journal_path = run_path.with_file_name(JOURNAL_FILE);
    match fs::metadata(&journal_path) {
        Ok(metadata) => Ok(metadata.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_error("read", &journal_path, e)),
    }
}

/// Appends `line` at `valid_len` (cutting off a torn tail first) and fsyncs it; a new
/// journal file is made durable in its directory too.
fn append_durably(path: &Path, valid_len: u64, line: &[u8], failpoint: &JournalFailpoint) -> Result<(), StoreError> {
    let existed = path.exists();
    let mut file =
        OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(|e| io_error("open", path, e))?;
    let len = file.metadata().map_err(|e| io_error("read", path, e))?.len();
    if len != valid_len {
        file.set_len(valid_len).map_err(|e| io_error("truncate", path, e))?;
    }
    failpoint.maybe_tear(&mut file, line);
    file.write_all(line).and_then(|()| file.sync_data()).map_err(|e| io_error("append to", path, e))?;
    if !existed {
        sync_dir(path.parent().expect("journal path has a parent"))?;
    }
    Ok(())
}

fn remove_if_exists(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(path.parent().expect("file path has a parent")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("remove", path, e)),
    }
}

/// `DRPLAN_FAILPOINT=kill-mid-journal-write=K`: on this process's K-th journal append,
/// write half the line, flush it and SIGKILL the process: the torn write a crash leaves.
#[derive(Clone, Debug, Default)]
struct JournalFailpoint {
    kill_at_append: Option<u64>,
    appends: Arc<AtomicU64>,
}

impl JournalFailpoint {
    fn from_env() -> JournalFailpoint {
        let spec = std::env::var("DRPLAN_FAILPOINT").unwrap_or_default();
        let kill_at_append = spec
            .split(',')
            .filter_map(|part| part.trim().strip_prefix("kill-mid-journal-write="))
            .find_map(|k| k.parse().ok());
        JournalFailpoint { kill_at_append, appends: Arc::default() }
    }

    fn maybe_tear(&self, file: &mut File, line: &[u8]) {
        let Some(kill_at) = self.kill_at_append else { return };
        if self.appends.fetch_add(1, Ordering::SeqCst) + 1 == kill_at {
            let _ = file.write_all(&line[..line.len() / 2]).and_then(|()| file.sync_data());
            // SIGKILL, not exit: no destructors, no flushing, exactly like a crash.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}

/// Run ids name directories: no separators, no `..`, nothing hidden.
pub(super) fn validate_run_id(run_id: &str) -> Result<(), StoreError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let valid = !run_id.is_empty() && run_id.len() <= 200 && !run_id.starts_with('.') && run_id.chars().all(allowed);
    if valid { Ok(()) } else { Err(StoreError::InvalidRunId { run_id: run_id.to_string() }) }
}

/// A file name for a lock key: its safe characters for people, plus a hash of the whole
/// key so that keys differing only in replaced characters (`a/b`, `a:b`) stay distinct.
fn lock_file_stem(key: &str) -> String {
    let readable: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') { c } else { '_' })
        .take(80)
        .collect();
    let hash = super::digest(key.as_bytes());
    format!("{readable}-{}", &hash[..12])
}

// ---------------------------------------------------------------------------
// Locks

#[derive(Debug)]
struct LocalLockGuard {
    /// The open, flocked lock file; `None` once released.
    file: Option<File>,
    path: PathBuf,
    info: LockInfo,
    took_over_from: Option<LockInfo>,
}

/// One attempt at the lock file: the guard, `Locked`, or `None` when the file was
/// unlinked by a releasing holder between our open and our flock (try again).
fn try_lock_file(path: &Path, info: &LockInfo) -> Result<Option<LocalLockGuard>, StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false) // the content is the current holder; only read it once the flock is ours
        .open(path)
        .map_err(|e| io_error("open", path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(locked(path, read_busy_holder(path))),
        Err(TryLockError::Error(e)) => return Err(io_error("lock", path, e)),
    }
    if !names_same_file(path, &file) {
        return Ok(None);
    }
    let took_over_from = match read_holder(&file) {
        None => None,
        Some(previous) if is_dead_holder(&previous) => Some(previous),
        // Free flock but a live (or unverifiable) holder: not written by this protocol's
        // release, so be conservative and let a person decide.
        Some(previous) => return Err(locked(path, previous)),
    };
    write_holder(&file, path, info)?;
    sync_dir(path.parent().expect("lock path has a parent"))?;
    Ok(Some(LocalLockGuard { file: Some(file), path: path.to_path_buf(), info: info.clone(), took_over_from }))
}

fn locked(path: &Path, holder: LockInfo) -> StoreError {
    let if_gone = format!(
        "If that process is gone for good (for example its machine died), remove {} and continue with \
         `dr resume {}`.",
        path.display(),
        holder.run_id
    );
    StoreError::Locked { location: path.display().to_string(), holder: Box::new(holder), if_gone }
}

/// The holder recorded in a lock file; `None` when empty or unreadable (a holder that
/// died between taking the flock and finishing its write).
fn read_holder(mut file: &File) -> Option<LockInfo> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// The holder of a lock someone else has flocked. It writes its info just after taking
/// the flock, so an empty file may only mean "not yet": retry briefly.
fn read_busy_holder(path: &Path) -> LockInfo {
    for _ in 0..HOLDER_READ_ATTEMPTS {
        if let Some(holder) = File::open(path).ok().and_then(|file| read_holder(&file)) {
            return holder;
        }
        std::thread::sleep(HOLDER_READ_PAUSE);
    }
    LockInfo {
        holder: "an unknown holder (the lock file names nobody)".into(),
        pid: 0,
        host: "unknown host".into(),
        run_id: "unknown".into(),
        since: "unknown".into(),
        operation: "unknown".into(),
    }
}

fn write_holder(mut file: &File, path: &Path, info: &LockInfo) -> Result<(), StoreError> {
    let json =
        serde_json::to_vec_pretty(info).map_err(|source| StoreError::Encode { run_id: info.run_id.clone(), source })?;
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(&json))
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error("write", path, e))
}

/// Whether `holder` is a process of this host that no longer exists. A holder on another
/// host cannot be checked from here, so it never counts as dead.
fn is_dead_holder(holder: &LockInfo) -> bool {
    holder.host == this_host() && !pid_alive(holder.pid)
}

/// Linux: a live process has `/proc/<pid>`. Without procfs we cannot tell, so assume alive.
fn pid_alive(pid: u32) -> bool {
    !Path::new("/proc/self").exists() || Path::new("/proc").join(pid.to_string()).exists()
}

/// Whether `path` still names the inode `file` has open.
fn names_same_file(path: &Path, file: &File) -> bool {
    match (fs::metadata(path), file.metadata()) {
        (Ok(on_disk), Ok(open)) => on_disk.dev() == open.dev() && on_disk.ino() == open.ino(),
        _ => false,
    }
}

impl LocalLockGuard {
    fn release(&mut self) -> Result<(), StoreError> {
        let Some(file) = self.file.take() else { return Ok(()) };
        // Unlink while still holding the flock, so nobody can take the lock on this inode
        // and then lose it to the unlink. Only if the path is still ours: if someone removed
        // the file by hand, a new holder's file may be there now.
        if names_same_file(&self.path, &file)
            && let Err(e) = fs::remove_file(&self.path)
        {
            // An empty lock file reads as free, so the lock is released even so.
            let _ = file.set_len(0);
            return Err(io_error("remove", &self.path, e));
        }
        drop(file); // closing the descriptor releases the flock
        Ok(())
    }
}

impl LockGuard for LocalLockGuard {
    fn info(&self) -> &LockInfo {
        &self.info
    }

    fn took_over_from(&self) -> Option<&LockInfo> {
        self.took_over_from.as_ref()
    }

    fn unlock(mut self: Box<Self>) -> Result<(), StoreError> {
        self.release()
    }
}

impl Drop for LocalLockGuard {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

// ---------------------------------------------------------------------------
// Crash-safe file writes

/// Replaces `path` with `bytes`: readers (and a reboot) see the old content or the new, never a mix.
fn replace_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let temp = write_temp_beside(path, bytes)?;
    if let Err(e) = fs::rename(&temp, path) {
        let _ = fs::remove_file(&temp);
        return Err(io_error("replace", path, e));
    }
    sync_dir(path.parent().expect("file path has a parent"))
}

/// Creates `path` with `bytes`, failing with `AlreadyExists` if it exists. `link(2)` is
/// the exclusive create here (rename would replace): the file appears complete or not at all.
fn create_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let temp = write_temp_beside(path, bytes)?;
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    linked.map_err(|e| io_error("create", path, e))?;
    sync_dir(path.parent().expect("file path has a parent"))
}

/// Writes `bytes` to a new hidden temp file next to `path` and fsyncs it.
fn write_temp_beside(path: &Path, bytes: &[u8]) -> Result<PathBuf, StoreError> {
    let temp = temp_path_beside(path);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600) // captured manifests are nobody else's business, even with Secrets redacted
        .open(&temp)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(io_error("write", &temp, e));
    }
    Ok(temp)
}

/// `.<name>.tmp-<pid>-<n>-<random>`: hidden, and unique across processes and threads.
fn temp_path_beside(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random = super::random_u16();
    path.with_file_name(format!(".{name}.tmp-{}-{n}-{random:04x}", std::process::id()))
}

/// Makes a directory's entries (a rename, a new file) durable, not just the files' data.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error("sync", dir, e))
}

fn modified_at(path: &Path) -> String {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .map(|t| humantime::format_rfc3339_millis(t).to_string())
        .unwrap_or_default()
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io { action, path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_cannot_escape_the_store() {
        for bad in ["", "..", "../x", "a/b", ".hidden", "a\\b", "a b"] {
            assert!(matches!(validate_run_id(bad), Err(StoreError::InvalidRunId { .. })), "{bad:?}");
        }
        validate_run_id("20250102T030405Z-db-failover-3fa9").unwrap();
    }

    #[test]
    fn lock_file_names_are_safe_and_distinct() {
        let a = lock_file_stem("db/failover@ctx-a,ctx-b");
        let b = lock_file_stem("db:failover@ctx-a,ctx-b");
        assert_ne!(a, b);
        assert!(a.starts_with("db_failover_ctx-a_ctx-b-"), "{a}");
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{a}");
        assert!(lock_file_stem(&"x".repeat(1000)).len() < 100);
    }

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_not() {
        assert!(pid_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!pid_alive(pid));
    }
}
