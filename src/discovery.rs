//! Discovery: which processes under the procfs root are Node.js processes to watch, who they are
//! (`ProcessKey`: pid and start time) and what they are called (`app`).
//!
//! It reads only what identifies a process: `stat`, `cmdline`, the `exe` link, the owner, and from
//! the environment exactly PM2's `name`, `pm_id`, `max_memory_restart` and `NODE_OPTIONS`. Nothing
//! read here other than the app name is exported, and nothing is logged: command lines and
//! environments hold secrets.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use procfs::process::Process;

use crate::collect::inspector::locate::InspectFlags;
use crate::config::{AppTemplate, ConfigError, DiscoveryConfig, Matcher, TemplateVar, UserSpec};

/// A process is (pid, start time in clock ticks since boot): a reused pid is a new process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessKey {
    pub pid: i32,
    pub start_ticks: u64,
}

/// What a process is managed by PM2 as, from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pm2Info {
    pub name: String,
    pub id: Option<String>,
    /// `max_memory_restart` in bytes, when set.
    pub max_memory_restart: Option<u64>,
}

/// Everything discovery learned about a watched process.
#[derive(Debug, Clone)]
pub struct Identity {
    pub app: String,
    pub comm: String,
    /// Base name of the executable when the `exe` link is readable.
    pub exe_name: Option<String>,
    /// Base name of the main script (`server.js`), `[eval]` for `-e`, none for a REPL.
    pub script: Option<String>,
    pub uid: u32,
    pub user: String,
    pub pm2: Option<Pm2Info>,
    /// What the command line and `NODE_OPTIONS` say about the inspector (host and port only;
    /// neither is kept).
    pub inspect: InspectFlags,
    /// The pid as the process sees itself in its pid namespace (the last `NSpid`).
    pub ns_pid: Option<i32>,
    /// Given by `--discovery.pid`: exported whatever its age.
    pub explicit: bool,
    /// `v20.20.2`, read from the executable, when readable.
    pub node_version: Option<String>,
}

/// One live, matching process found by a scan.
pub struct Found {
    pub key: ProcessKey,
    /// A new handle on the process, or none to keep the target's.
    pub handle: Option<Process>,
    /// The `stat` read for this scan, reused by the collectors.
    pub stat: Option<crate::procstat::ProcStat>,
    /// Set for a process seen for the first time (or that changed what it runs).
    pub identity: Option<Identity>,
    /// Whether the process is a zombie: it has exited and waits for its parent.
    pub zombie: bool,
}

/// Counters of one scan, for self-observation.
#[derive(Debug, Default, Clone, Copy)]
pub struct ScanStats {
    pub processes_seen: usize,
    pub evaluated: usize,
    pub permission_denied: usize,
}

/// Scans the procfs root for watched processes, remembering non-matching ones by key so that a
/// host with thousands of processes costs one `stat` read each per scan.
pub struct Discovery {
    procfs: PathBuf,
    config: DiscoveryConfig,
    include_uids: Vec<Option<u32>>,
    exclude_uids: Vec<Option<u32>>,
    users: HashMap<u32, String>,
    explicit: HashSet<i32>,
    /// Processes that did not match, with the comm they had: a changed comm means an exec (or a
    /// new `process.title`) and a new evaluation.
    rejected: HashMap<ProcessKey, String>,
    /// Comm of watched processes at their last evaluation.
    accepted: HashMap<ProcessKey, String>,
    /// Reused read buffer.
    buf: Vec<u8>,
    /// Node.js version per executable file (device, inode, size, mtime): reading it scans the
    /// binary once.
    versions: HashMap<(u64, u64, u64, i64), Option<String>>,
}

impl Discovery {
    pub fn new(procfs: &Path, passwd: &Path, config: DiscoveryConfig) -> Result<Self, ConfigError> {
        let users = read_passwd(passwd);
        let resolve = |list: &str, matchers: &[Matcher]| -> Result<Vec<Option<u32>>, ConfigError> {
            matchers
                .iter()
                .enumerate()
                .map(|(i, m)| match &m.user {
                    None => Ok(None),
                    Some(UserSpec::Uid(uid)) => Ok(Some(*uid)),
                    Some(UserSpec::Name(name)) => {
                        users.iter().find(|(_, n)| *n == name).map(|(uid, _)| Some(*uid)).ok_or_else(|| {
                            ConfigError::Invalid {
                                field: format!("discovery.{list}[{i}].user"),
                                message: format!("no user named {name:?} in {}", passwd.display()),
                            }
                        })
                    }
                })
                .collect()
        };
        let include_uids = resolve("include", &config.include)?;
        let exclude_uids = resolve("exclude", &config.exclude)?;
        Ok(Discovery {
            procfs: procfs.to_path_buf(),
            explicit: config.pids.iter().copied().collect(),
            config,
            include_uids,
            exclude_uids,
            users,
            rejected: HashMap::new(),
            accepted: HashMap::new(),
            versions: HashMap::new(),
            buf: Vec::with_capacity(4096),
        })
    }

    /// Finds every watched process. `known` holds the handles of current targets by pid, with
    /// their start ticks: their `stat` is read through the handle they have, and their identity is
    /// not rebuilt.
    pub fn scan(&mut self, known: &HashMap<i32, (&Process, u64)>) -> std::io::Result<(Vec<Found>, ScanStats)> {
        let mut found = Vec::new();
        let mut stats = ScanStats::default();
        let mut alive = HashSet::new();
        for entry in std::fs::read_dir(&self.procfs)? {
            let Ok(entry) = entry else { continue };
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            stats.processes_seen += 1;
            // A process may vanish at any point below: that is normal, not an error.
            if let Some((handle, start)) = known.get(&pid) {
                if let Ok(stat) = crate::procstat::read_stat(handle, &mut self.buf) {
                    let key = ProcessKey { pid, start_ticks: stat.starttime };
                    if stat.starttime == *start && self.accepted.get(&key) == Some(&stat.comm) {
                        alive.insert(key);
                        let zombie = stat.state == 'Z' || stat.state == 'X';
                        found.push(Found { key, handle: None, stat: Some(stat), identity: None, zombie });
                        continue;
                    }
                }
            }
            // Every other process costs one stat read by path; a handle is opened only for one
            // that needs a closer look.
            let Ok(stat) = read_stat_at(&entry.path(), &mut self.buf) else { continue };
            let key = ProcessKey { pid, start_ticks: stat.starttime };
            alive.insert(key);
            let zombie = stat.state == 'Z' || stat.state == 'X';
            let explicit = self.explicit.contains(&pid);
            let comm = stat.comm.clone();
            if !explicit && self.rejected.get(&key) == Some(&comm) {
                continue;
            }
            let is_known = known.get(&pid).is_some_and(|(_, start)| *start == key.start_ticks);
            if zombie && !is_known {
                continue;
            }
            let Ok(handle) = Process::new_with_root(entry.path()) else { continue };
            // The pid may have been reused between the two reads.
            match crate::procstat::read_stat(&handle, &mut self.buf) {
                Ok(s) if s.starttime == key.start_ticks => {}
                _ => continue,
            }
            stats.evaluated += 1;
            let facts = Facts::read(&handle, comm.clone(), &mut stats);
            if facts.kernel_thread && !explicit {
                self.rejected.insert(key, comm);
                continue;
            }
            match self.evaluate(&facts, explicit) {
                Some(matcher_index) => {
                    let identity = self.identify(&handle, &facts, matcher_index, explicit);
                    self.rejected.remove(&key);
                    self.accepted.insert(key, comm);
                    found.push(Found { key, handle: Some(handle), stat: Some(stat), identity: Some(identity), zombie });
                }
                None => {
                    self.accepted.remove(&key);
                    self.rejected.insert(key, comm);
                }
            }
        }
        self.rejected.retain(|k, _| alive.contains(k));
        self.accepted.retain(|k, _| alive.contains(k));
        Ok((found, stats))
    }

    /// Returns the index of the include matcher that takes the process (`usize::MAX` for an
    /// explicit pid), or none.
    fn evaluate(&self, facts: &Facts, explicit: bool) -> Option<usize> {
        if explicit {
            return Some(usize::MAX);
        }
        let excluded = self.config.exclude.iter().zip(&self.exclude_uids).any(|(m, uid)| matches(m, *uid, facts));
        if excluded {
            return None;
        }
        self.config.include.iter().zip(&self.include_uids).position(|(m, uid)| matches(m, *uid, facts))
    }

    fn identify(&mut self, handle: &Process, facts: &Facts, matcher_index: usize, explicit: bool) -> Identity {
        let env = read_environ(handle);
        let node_version = self.node_version(handle);
        let user = self.users.get(&facts.uid).cloned().unwrap_or_else(|| facts.uid.to_string());
        let script_base = facts.script.as_deref().map(base_name);
        let lookup_base = |v: &TemplateVar, groups: &HashMap<String, String>| -> String {
            match v {
                TemplateVar::Comm => facts.comm.clone(),
                TemplateVar::Exe => facts.exe.as_deref().map(|p| base_name(&p.to_string_lossy())).unwrap_or_default(),
                TemplateVar::Script => script_base.clone().unwrap_or_default(),
                TemplateVar::ScriptDir => facts.script.as_deref().map(parent_name).unwrap_or_default(),
                TemplateVar::User => user.clone(),
                TemplateVar::Match(g) => groups.get(g).cloned().unwrap_or_default(),
            }
        };
        let matcher = self.config.include.get(matcher_index);
        let app = if let Some(pm2) = &env.pm2 {
            pm2.name.clone()
        } else if let Some((m, template)) = matcher.and_then(|m| m.app.as_ref().map(|t| (m, t))) {
            let groups = m.cmdline.as_ref().map(|re| capture_groups(&re.0, &facts.cmdline)).unwrap_or_default();
            render_app(template, |v| lookup_base(v, &groups))
        } else if let Some(template) = &self.config.app_template {
            render_app(template, |v| lookup_base(v, &HashMap::new()))
        } else {
            script_base.clone().unwrap_or_else(|| first_token(&facts.comm).to_string())
        };
        Identity {
            app: sanitize_label(&app),
            comm: facts.comm.clone(),
            exe_name: facts.exe.as_deref().map(|p| base_name(&p.to_string_lossy())),
            script: script_base,
            uid: facts.uid,
            user,
            pm2: env.pm2,
            inspect: InspectFlags::parse(&facts.argv, env.node_options.as_deref()),
            ns_pid: handle.status().ok().and_then(|s| s.nspid).and_then(|ns| ns.last().copied()),
            explicit,
            node_version,
        }
    }

    fn node_version(&mut self, handle: &Process) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        let exe_path = self.procfs.join(handle.pid.to_string()).join("exe");
        // Through the magic link: works for a binary in another mount namespace or deleted.
        let meta = std::fs::metadata(&exe_path).ok()?;
        let key = (meta.dev(), meta.ino(), meta.size(), meta.mtime());
        if let Some(v) = self.versions.get(&key) {
            return v.clone();
        }
        let version = std::fs::File::open(&exe_path).ok().and_then(scan_node_version);
        if self.versions.len() >= 64 {
            self.versions.clear();
        }
        self.versions.insert(key, version.clone());
        version
    }
}

fn render_app(template: &AppTemplate, lookup: impl Fn(&TemplateVar) -> String) -> String {
    let s = template.render(lookup);
    if s.is_empty() {
        "unknown".into()
    } else {
        s
    }
}

fn capture_groups(re: &regex::Regex, haystack: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    if let Some(caps) = re.captures(haystack) {
        for name in re.capture_names().flatten() {
            if let Some(m) = caps.name(name) {
                out.insert(name.to_string(), m.as_str().to_string());
            }
        }
    }
    out
}

/// Finds the version an official Node.js build embeds in its headers URL
/// (`.../node-v20.20.2-headers.tar.gz`), reading the file in chunks.
pub fn scan_node_version(mut file: impl Read) -> Option<String> {
    const MARK: &[u8] = b"-headers.tar.gz";
    const OVERLAP: usize = 64;
    let finder = memchr::memmem::Finder::new(MARK);
    let mut buf = vec![0u8; 1 << 20];
    let mut filled = 0;
    loop {
        let n = file.read(&mut buf[filled..]).ok()?;
        if n == 0 {
            return None;
        }
        filled += n;
        let window = &buf[..filled];
        let mut from = 0;
        while let Some(pos) = finder.find(&window[from..]) {
            let end = from + pos;
            let head = &window[end.saturating_sub(40)..end];
            if let Some(start) = memchr::memmem::rfind(head, b"node-v") {
                let v = &head[start + 5..];
                if v.len() > 1 && v[1..].iter().all(|b| b.is_ascii_digit() || *b == b'.') {
                    return Some(String::from_utf8_lossy(v).into_owned());
                }
            }
            from = end + MARK.len();
        }
        if filled == buf.len() {
            buf.copy_within(filled - OVERLAP.., 0);
            filled = OVERLAP;
        }
    }
}

/// What matchers look at. Lives only for one evaluation.
struct Facts {
    comm: String,
    argv: Vec<String>,
    exe: Option<PathBuf>,
    argv0: String,
    cmdline: String,
    script: Option<String>,
    uid: u32,
    kernel_thread: bool,
}

impl Facts {
    fn read(handle: &Process, comm: String, stats: &mut ScanStats) -> Facts {
        let argv = read_cmdline(handle);
        let exe = match handle.exe() {
            Ok(p) => Some(p),
            Err(procfs::ProcError::PermissionDenied(_)) => {
                stats.permission_denied += 1;
                None
            }
            Err(_) => None,
        };
        let uid = handle.uid().unwrap_or(u32::MAX);
        let kernel_thread = argv.is_empty() && exe.is_none();
        Facts {
            argv0: argv.first().map(|a| a.to_string()).unwrap_or_default(),
            cmdline: argv.join(" "),
            script: node_argv0(&argv).then(|| main_script(&argv)).flatten(),
            argv,
            comm,
            exe,
            uid,
            kernel_thread,
        }
    }
}

/// Reads `<dir>/stat` by path (for processes that are not targets).
fn read_stat_at(dir: &Path, buf: &mut Vec<u8>) -> std::io::Result<crate::procstat::ProcStat> {
    let mut file = std::fs::File::open(dir.join("stat"))?;
    buf.clear();
    buf.resize(1024, 0);
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        let n = file.read(&mut buf[len..])?;
        if n == 0 {
            break;
        }
        len += n;
        if buf[len - 1] == b'\n' {
            break;
        }
    }
    buf.truncate(len);
    std::str::from_utf8(buf)
        .ok()
        .and_then(crate::procstat::parse_stat)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "unparsable stat"))
}

/// Whether every field the matcher sets matches the process.
fn matches(m: &Matcher, uid: Option<u32>, f: &Facts) -> bool {
    matches_all(m, uid, f).is_some()
}

fn matches_all(m: &Matcher, uid: Option<u32>, f: &Facts) -> Option<()> {
    if let Some(re) = &m.name {
        let exe_name = f.exe.as_deref().map(|p| base_name(&p.to_string_lossy()));
        let candidates = [exe_name.as_deref(), Some(first_token(&f.comm)), Some(&base_name(&f.argv0))];
        if !candidates.into_iter().flatten().any(|c| !c.is_empty() && re.is_match(c)) {
            return None;
        }
    }
    if let Some(re) = &m.comm {
        re.is_match(&f.comm).then_some(())?;
    }
    if let Some(re) = &m.exe {
        re.is_match(&f.exe.as_deref()?.to_string_lossy()).then_some(())?;
    }
    if let Some(re) = &m.cmdline {
        re.is_match(&f.cmdline).then_some(())?;
    }
    if let Some(re) = &m.script {
        re.is_match(&base_name(f.script.as_deref()?)).then_some(())?;
    }
    if let Some(want) = uid {
        (want == f.uid).then_some(())?;
    }
    Some(())
}

/// Reads argv. A process that rewrote `process.title` (PM2 does) has one NUL-less string with
/// spaces: split it on whitespace, which is the best that can be done.
fn read_cmdline(handle: &Process) -> Vec<String> {
    let Ok(mut file) = handle.open_relative("cmdline") else { return Vec::new() };
    let mut buf = Vec::with_capacity(256);
    // Bounded: a command line can be megabytes; the head is enough to identify the process.
    if file.by_ref().take(64 * 1024).read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    split_cmdline(&buf)
}

pub fn split_cmdline(buf: &[u8]) -> Vec<String> {
    let args: Vec<String> =
        buf.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    if args.len() == 1 && args[0].contains(' ') {
        return args[0].split_whitespace().map(str::to_string).collect();
    }
    args
}

/// Whether argv[0] is a node executable, so argv holds node options and a script. An explicit
/// pid may be anything, and a rewritten title holds no script.
fn node_argv0(argv: &[String]) -> bool {
    static NODE: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(crate::config::NODE_NAME_PATTERN).expect("valid"));
    argv.first().is_some_and(|a| NODE.is_match(&base_name(a)))
}

/// Node options that take their value as the next argument.
const OPTIONS_WITH_VALUE: &[&str] = &[
    "-r",
    "--require",
    "--import",
    "--loader",
    "--experimental-loader",
    "-C",
    "--conditions",
    "--inspect-port",
    "--debug-port",
    "--title",
    "--input-type",
    "--env-file",
    "--env-file-if-exists",
    "--openssl-config",
    "--icu-data-dir",
    "--redirect-warnings",
    "--diagnostic-dir",
    "--report-dir",
    "--report-directory",
    "--report-filename",
    "--report-signal",
    "--heapsnapshot-signal",
    "--cpu-prof-dir",
    "--cpu-prof-name",
    "--heap-prof-dir",
    "--heap-prof-name",
    "--unhandled-rejections",
    "--disable-warning",
    "--watch-path",
    "--dns-result-order",
    "--secure-heap",
    "--secure-heap-min",
    "--experimental-config-file",
    "--localstorage-file",
    "--stack-size",
];

/// Finds the main script in a node argv: the first argument that is not an option or an option's
/// value. `-e`/`-p` give `[eval]`, `-` gives `[stdin]`, none (a REPL) gives `None`.
pub fn main_script(argv: &[String]) -> Option<String> {
    let end = node_options_end(argv);
    match argv.get(end).map(String::as_str) {
        None => None,
        Some("--") => argv.get(end + 1).cloned(),
        Some("-") => Some("[stdin]".into()),
        Some(a) if a.starts_with('-') => Some("[eval]".into()),
        Some(a) => Some(a.to_string()),
    }
}

/// The index where node's own options end: the script, `-e`/`-p` (whose code follows), `-`, `--`,
/// or `argv.len()`. Options before it are node's; arguments after it are the app's.
pub fn node_options_end(argv: &[String]) -> usize {
    let mut i = 1;
    while i < argv.len() {
        match argv[i].as_str() {
            "--" | "-" | "-e" | "--eval" | "-p" | "--print" | "-pe" => return i,
            a if a.starts_with("--eval=") || a.starts_with("--print=") => return i,
            a if a.starts_with('-') => {
                if !a.contains('=') && OPTIONS_WITH_VALUE.contains(&a) {
                    i += 1;
                }
            }
            _ => return i,
        }
        i += 1;
    }
    argv.len()
}

fn first_token(s: &str) -> &str {
    s.split_whitespace().next().unwrap_or("")
}

pub fn base_name(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}

fn parent_name(path: &str) -> String {
    let p = Path::new(path);
    p.parent().and_then(Path::file_name).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Label values are free text; bound their length and drop control characters.
pub fn sanitize_label(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(128).collect()
}

/// The few environment values discovery keeps.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EnvFacts {
    pub pm2: Option<Pm2Info>,
    pub node_options: Option<String>,
}

fn read_environ(handle: &Process) -> EnvFacts {
    let Ok(mut file) = handle.open_relative("environ") else { return EnvFacts::default() };
    let mut buf = Vec::new();
    // pm2_env holds the app's whole environment: a few hundred KiB at most in practice.
    if file.by_ref().take(4 * 1024 * 1024).read_to_end(&mut buf).is_err() {
        return EnvFacts::default();
    }
    parse_environ(&buf)
}

/// Extracts PM2's identity and `NODE_OPTIONS` from a NUL-separated environment, dropping the rest.
pub fn parse_environ(buf: &[u8]) -> EnvFacts {
    let mut name = None;
    let mut pm_id = None;
    let mut max_memory = None;
    let mut pm2_env = None;
    let mut node_options = None;
    for var in buf.split(|b| *b == 0) {
        let Some(eq) = var.iter().position(|b| *b == b'=') else { continue };
        let (k, v) = (&var[..eq], &var[eq + 1..]);
        match k {
            b"name" => name = Some(String::from_utf8_lossy(v).into_owned()),
            b"pm_id" => pm_id = Some(String::from_utf8_lossy(v).into_owned()),
            b"max_memory_restart" => max_memory = parse_memory_size(&String::from_utf8_lossy(v)),
            b"pm2_env" => pm2_env = Some(v),
            b"NODE_OPTIONS" => node_options = Some(String::from_utf8_lossy(v).into_owned()),
            _ => {}
        }
    }
    // Cluster mode: the worker's identity sits inside the pm2_env JSON.
    let pm2 = if let Some(json) = pm2_env.and_then(|v| serde_json::from_slice::<Pm2EnvJson>(v).ok()) {
        json.name.map(|name| Pm2Info {
            name,
            id: json.pm_id.as_ref().and_then(json_scalar),
            max_memory_restart: json
                .max_memory_restart
                .as_ref()
                .and_then(json_scalar)
                .and_then(|s| parse_memory_size(&s)),
        })
    } else {
        // Fork mode: PM2 flattens its fields into the environment; `pm_id` tells it from an app
        // that merely has a `name` variable.
        match (name, pm_id) {
            (Some(name), Some(id)) if !name.is_empty() => {
                Some(Pm2Info { name, id: Some(id), max_memory_restart: max_memory })
            }
            _ => None,
        }
    };
    EnvFacts { pm2, node_options }
}

#[derive(serde::Deserialize)]
struct Pm2EnvJson {
    name: Option<String>,
    pm_id: Option<serde_json::Value>,
    max_memory_restart: Option<serde_json::Value>,
}

fn json_scalar(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses PM2's memory sizes: bytes (`209715200`), or with a `K`, `M`, `G` suffix (`200M`).
pub fn parse_memory_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, mult) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1u64 << 10),
        (i, 'M' | 'm') => (&s[..i], 1 << 20),
        (i, 'G' | 'g') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    let n: f64 = digits.trim().parse().ok()?;
    (n.is_finite() && n > 0.0).then_some((n * mult as f64) as u64)
}

/// uid → name from a passwd file. A missing or unreadable file leaves uids numeric.
pub fn read_passwd(path: &Path) -> HashMap<u32, String> {
    let Ok(text) = std::fs::read(path) else { return HashMap::new() };
    text.split(|b| *b == b'\n')
        .filter_map(|line| {
            let mut fields = line.split(|b| *b == b':');
            let name = fields.next()?;
            let uid = std::str::from_utf8(fields.nth(1)?).ok()?.parse().ok()?;
            Some((uid, OsStr::from_bytes(name).to_string_lossy().into_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn main_script_skips_options_and_their_values() {
        assert_eq!(main_script(&argv("node server.js --port 3")).as_deref(), Some("server.js"));
        assert_eq!(
            main_script(&argv("node --inspect=127.0.0.1:0 -r dotenv/config app/main.js")).as_deref(),
            Some("app/main.js")
        );
        assert_eq!(main_script(&argv("node --max-old-space-size=64 --import tsx ./a.mjs")).as_deref(), Some("./a.mjs"));
        assert_eq!(main_script(&argv("node --inspect-port 0 x.js")).as_deref(), Some("x.js"));
        assert_eq!(main_script(&argv("node -e 1")).as_deref(), Some("[eval]"));
        assert_eq!(main_script(&argv("node -- -weird.js")).as_deref(), Some("-weird.js"));
        assert_eq!(main_script(&argv("node")), None);
        assert_eq!(main_script(&argv("node --inspect")), None);
    }

    #[test]
    fn rewritten_title_is_split() {
        let v = split_cmdline(b"node /srv/app/server.js           ");
        assert_eq!(v, vec!["node", "/srv/app/server.js"]);
        let v = split_cmdline(b"node\0/srv/my app/a.js\0");
        assert_eq!(v, vec!["node", "/srv/my app/a.js"]);
    }

    #[test]
    fn pm2_fork_mode_environment() {
        let env =
            b"PATH=/bin\0name=api\0pm_id=3\0max_memory_restart=209715200\0SECRET=x\0NODE_OPTIONS=--inspect-port=0\0";
        let f = parse_environ(env);
        assert_eq!(
            f.pm2,
            Some(Pm2Info { name: "api".into(), id: Some("3".into()), max_memory_restart: Some(209715200) })
        );
        assert_eq!(f.node_options.as_deref(), Some("--inspect-port=0"));
    }

    #[test]
    fn pm2_cluster_mode_environment() {
        let env = br#"HOME=/root pm2_env={"name":"clu","env":{"SECRET":"s"},"pm_id":2,"max_memory_restart":"300M"}"#;
        let env: Vec<u8> = env.iter().map(|b| if *b == b' ' { 0 } else { *b }).collect();
        let f = parse_environ(&env);
        assert_eq!(
            f.pm2,
            Some(Pm2Info { name: "clu".into(), id: Some("2".into()), max_memory_restart: Some(300 << 20) })
        );
    }

    #[test]
    fn a_name_variable_alone_is_not_pm2() {
        assert_eq!(parse_environ(b"name=foo\0").pm2, None);
        assert_eq!(parse_environ(b"pm2_env=not json\0").pm2, None);
    }

    #[test]
    fn node_version_from_binary() {
        let mut bin = vec![0u8; 3 << 20];
        let url = b"https://nodejs.org/download/release/v22.1.0/node-v22.1.0-headers.tar.gz";
        let at = (1 << 20) - 30; // straddles a chunk boundary
        bin[at..at + url.len()].copy_from_slice(url);
        assert_eq!(scan_node_version(&bin[..]).as_deref(), Some("v22.1.0"));
        assert_eq!(scan_node_version(&[0u8; 100][..]), None);
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory_size("200M"), Some(200 << 20));
        assert_eq!(parse_memory_size("1G"), Some(1 << 30));
        assert_eq!(parse_memory_size("512K"), Some(512 << 10));
        assert_eq!(parse_memory_size("1024"), Some(1024));
        assert_eq!(parse_memory_size("lots"), None);
        assert_eq!(parse_memory_size(""), None);
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(sanitize_label(&"a".repeat(500)).len(), 128);
        assert_eq!(sanitize_label("a\nb"), "ab");
    }
}
