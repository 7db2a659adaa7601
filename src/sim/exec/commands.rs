//! The commands a simulated container knows: a shell (`sh -c`), the file utilities
//! runbooks use (`mv`, `rm`, `cp`, `mkdir`, `test`, `ls`, `cat`, `echo`), `true`,
//! `false`, `exit`, `sleep`, and in etcd containers `etcdctl`/`etcdutl`. Each command
//! takes the state lock only while it runs, so `sleep` does not stop the cluster.

use std::time::Duration;

use super::fs::{ContainerFs, PathError, normalize};
use super::shell::{self, Joint, Simple};
use super::{Container, Output};
use crate::sim::cluster::Shared;
use crate::sim::files::FileNode;

/// Longest `sleep` honoured (real time): enough for timeout tests, never a stuck server.
const MAX_SLEEP: Duration = Duration::from_secs(30);

pub struct Session<'a> {
    pub shared: &'a Shared,
    pub container: &'a Container,
    pub fs: ContainerFs,
    pub out: Vec<u8>,
    pub err: Vec<u8>,
}

impl Session<'_> {
    /// Runs `argv` as the container runtime would (no shell unless argv names one).
    pub fn exec(mut self, argv: &[String]) -> Output {
        let code = match argv.first() {
            Some(_) if !self.known(&argv[0]) => {
                self.err(&format!(
                    "OCI runtime exec failed: exec failed: unable to start container process: exec: \"{}\": executable file not found in $PATH: unknown",
                    argv[0]
                ));
                127
            }
            Some(_) => self.command(argv),
            None => 0,
        };
        Output { stdout: self.out, stderr: self.err, code }
    }

    fn known(&self, program: &str) -> bool {
        let name = program.rsplit('/').next().unwrap_or(program);
        matches!(
            name,
            "sh" | "bash" | "mv" | "rm" | "cp" | "mkdir" | "test" | "ls" | "cat" | "echo" | "true" | "false" | "sleep"
        ) || (self.container.is_etcd && matches!(name, "etcdctl" | "etcdutl"))
    }

    pub fn say(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.push(b'\n');
    }

    pub fn err(&mut self, text: &str) {
        self.err.extend_from_slice(text.as_bytes());
        self.err.push(b'\n');
    }

    pub fn path(&self, written: &str) -> String {
        normalize(&self.container.working_dir, written)
    }

    /// One command with its arguments; the exit status.
    pub fn command(&mut self, argv: &[String]) -> i32 {
        let name = argv[0].rsplit('/').next().unwrap_or(&argv[0]).to_string();
        let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
        match name.as_str() {
            "sh" | "bash" => self.shell(&name, &args),
            "true" => 0,
            "false" => 1,
            "echo" => self.echo(&args),
            "sleep" => self.sleep(&args),
            "mv" => self.mv(&args),
            "rm" => self.rm(&args),
            "cp" => self.cp(&args),
            "mkdir" => self.mkdir(&args),
            "test" => self.test(&args),
            "ls" => self.ls(&args),
            "cat" => self.cat(&args),
            "etcdctl" if self.container.is_etcd => super::etcd::etcdctl(self, &args),
            "etcdutl" if self.container.is_etcd => super::etcd::etcdutl(self, &args),
            _ => {
                self.err(&format!("sh: {}: not found", argv[0]));
                127
            }
        }
    }

    fn shell(&mut self, name: &str, args: &[&str]) -> i32 {
        let Some(script) = args.strip_prefix(&["-c"]).and_then(|rest| rest.first()) else {
            self.err(&format!("{name}: only `{name} -c SCRIPT` is simulated"));
            return 2;
        };
        let list = match shell::parse(script) {
            Ok(list) => list,
            Err(e) => {
                self.err(&format!("{name}: 1: {e}"));
                return 2;
            }
        };
        let mut status = 0;
        for (joint, simple) in list {
            let runs = match joint {
                Joint::Then => true,
                Joint::And => status == 0,
                Joint::Or => status != 0,
            };
            if !runs {
                continue;
            }
            if simple.words[0] == "exit" {
                return simple.words.get(1).and_then(|c| c.parse().ok()).unwrap_or(status);
            }
            status = self.simple(&simple);
        }
        status
    }

    fn simple(&mut self, simple: &Simple) -> i32 {
        if simple.to_stderr {
            let kept = std::mem::take(&mut self.out);
            let status = self.command(&simple.words);
            let written = std::mem::replace(&mut self.out, kept);
            self.err.extend(written);
            return status;
        }
        let Some((file, append)) = &simple.redirect else {
            return self.command(&simple.words);
        };
        let kept = std::mem::take(&mut self.out);
        let status = self.command(&simple.words);
        let written = std::mem::replace(&mut self.out, kept);
        if file == "/dev/null" {
            return status;
        }
        let path = self.path(file);
        let result = {
            let mut state = self.shared.lock();
            let mut bytes = if *append { self.fs.read(&state, &path).unwrap_or_default() } else { Vec::new() };
            bytes.extend(written);
            self.fs.write(&mut state, &path, bytes)
        };
        match result {
            Ok(()) => status,
            Err(e) => {
                self.err(&format!("sh: 1: cannot create {file}: {}", e.text()));
                2
            }
        }
    }

    fn echo(&mut self, args: &[&str]) -> i32 {
        let (newline, words) = match args.first() {
            Some(&"-n") => (false, &args[1..]),
            _ => (true, args),
        };
        self.out.extend_from_slice(words.join(" ").as_bytes());
        if newline {
            self.out.push(b'\n');
        }
        0
    }

    fn sleep(&mut self, args: &[&str]) -> i32 {
        let Some(seconds) = args.first().and_then(|s| s.trim_end_matches('s').parse::<f64>().ok()) else {
            self.err("sleep: invalid time interval");
            return 1;
        };
        std::thread::sleep(Duration::from_secs_f64(seconds.max(0.0)).min(MAX_SLEEP));
        0
    }

    fn mv(&mut self, args: &[&str]) -> i32 {
        let (_, paths) = flags(args);
        let [from, to] = paths.as_slice() else {
            self.err("mv: missing destination file operand");
            return 1;
        };
        let (source, mut target) = (self.path(from), self.path(to));
        let mut state = self.shared.lock();
        if self.fs.node(&state, &source).is_none() {
            drop(state);
            self.err(&format!("mv: cannot stat '{from}': No such file or directory"));
            return 1;
        }
        if matches!(self.fs.node(&state, &target), Some(FileNode::Dir)) {
            target = format!("{target}/{}", source.rsplit('/').next().unwrap_or_default());
        }
        let result = self.fs.rename(&mut state, &source, &target);
        drop(state);
        self.report("mv", &format!("cannot move '{from}' to '{to}'"), result)
    }

    fn rm(&mut self, args: &[&str]) -> i32 {
        let (flags, paths) = flags(args);
        let recursive = flags.contains('r') || flags.contains('R');
        let force = flags.contains('f');
        let mut status = 0;
        for written in paths {
            let path = self.path(written);
            let result = self.fs.remove(&mut self.shared.lock(), &path, recursive);
            status |= match result {
                Err(PathError::Fs(crate::sim::files::FsError::NotFound)) if force => 0,
                Err(PathError::Fs(crate::sim::files::FsError::IsADirectory)) => {
                    self.err(&format!("rm: cannot remove '{written}': Is a directory"));
                    1
                }
                other => self.report("rm", &format!("cannot remove '{written}'"), other),
            };
        }
        status
    }

    fn cp(&mut self, args: &[&str]) -> i32 {
        let (flags, paths) = flags(args);
        let recursive = flags.contains('r') || flags.contains('R') || flags.contains('a');
        let [from, to] = paths.as_slice() else {
            self.err("cp: missing destination file operand");
            return 1;
        };
        let (source, mut target) = (self.path(from), self.path(to));
        let mut state = self.shared.lock();
        let copied = self.fs.copy_out(&state, &source);
        let result = copied.and_then(|(node, contents)| {
            if node == FileNode::Dir && !recursive {
                return Err(PathError::Fs(crate::sim::files::FsError::IsADirectory));
            }
            if matches!(self.fs.node(&state, &target), Some(FileNode::Dir)) {
                target = format!("{target}/{}", source.rsplit('/').next().unwrap_or_default());
            }
            if let (FileNode::File(bytes), Some(FileNode::File(_))) = (&node, self.fs.node(&state, &target)) {
                return self.fs.write(&mut state, &target, bytes.clone());
            }
            self.fs.copy_in(&mut state, &target, node, contents)
        });
        drop(state);
        match result {
            Err(PathError::Fs(crate::sim::files::FsError::IsADirectory)) => {
                self.err(&format!("cp: -r not specified; omitting directory '{from}'"));
                1
            }
            other => self.report("cp", &format!("cannot copy '{from}' to '{to}'"), other),
        }
    }

    fn mkdir(&mut self, args: &[&str]) -> i32 {
        let (flags, paths) = flags(args);
        let mut status = 0;
        for written in paths {
            let path = self.path(written);
            let result = self.fs.mkdir(&mut self.shared.lock(), &path, flags.contains('p'));
            status |= self.report("mkdir", &format!("cannot create directory '{written}'"), result);
        }
        status
    }

    fn test(&mut self, args: &[&str]) -> i32 {
        let (negate, args) = match args.first() {
            Some(&"!") => (true, &args[1..]),
            _ => (false, args),
        };
        let holds = match args {
            [flag @ ("-e" | "-d" | "-f" | "-s"), path] => {
                let node = self.fs.node(&self.shared.lock(), &self.path(path));
                match (*flag, node) {
                    ("-e", Some(_)) | ("-d", Some(FileNode::Dir)) | ("-f", Some(FileNode::File(_))) => true,
                    ("-s", Some(FileNode::File(bytes))) => !bytes.is_empty(),
                    _ => false,
                }
            }
            [word] => !word.is_empty(),
            [a, "=", b] => a == b,
            [a, "!=", b] => a != b,
            [] => false,
            _ => {
                self.err("test: unsupported expression");
                return 2;
            }
        };
        i32::from(holds == negate)
    }

    fn ls(&mut self, args: &[&str]) -> i32 {
        let (_, paths) = flags(args);
        let paths = if paths.is_empty() { vec!["."] } else { paths };
        let mut status = 0;
        let several = paths.len() > 1;
        for written in paths {
            let path = self.path(written);
            let state = self.shared.lock();
            let listing = match self.fs.node(&state, &path) {
                Some(FileNode::File(_)) => Ok(vec![written.to_string()]),
                Some(FileNode::Dir) => self.fs.list(&state, &path),
                None => Err(PathError::Fs(crate::sim::files::FsError::NotFound)),
            };
            drop(state);
            match listing {
                Ok(names) => {
                    if several {
                        self.say(&format!("{written}:"));
                    }
                    for name in names {
                        self.say(&name);
                    }
                }
                Err(e) => {
                    self.err(&format!("ls: cannot access '{written}': {}", e.text()));
                    status = 2;
                }
            }
        }
        status
    }

    fn cat(&mut self, args: &[&str]) -> i32 {
        let mut status = 0;
        for written in args {
            let path = self.path(written);
            let read = self.fs.read(&self.shared.lock(), &path);
            match read {
                Ok(bytes) => self.out.extend(bytes),
                Err(e) => {
                    self.err(&format!("cat: {written}: {}", e.text()));
                    status = 1;
                }
            }
        }
        status
    }

    fn report(&mut self, program: &str, what: &str, result: Result<(), PathError>) -> i32 {
        match result {
            Ok(()) => 0,
            Err(e) => {
                self.err(&format!("{program}: {what}: {}", e.text()));
                1
            }
        }
    }
}

/// Single-letter flags (`-rf` → "rf") and the other arguments.
fn flags<'a>(args: &[&'a str]) -> (String, Vec<&'a str>) {
    let mut letters = String::new();
    let mut rest = Vec::new();
    for arg in args {
        match arg.strip_prefix('-') {
            Some(f) if !f.is_empty() && !f.starts_with('-') => letters.push_str(f),
            _ => rest.push(*arg),
        }
    }
    (letters, rest)
}
