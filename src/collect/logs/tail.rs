//! Following one log file across rotations, and turning its bytes into lines.
//!
//! - rename-and-create (logrotate, pm2-logrotate's default) and delete-and-recreate: the old file
//!   stays open and is drained to its end — including lines its writer adds before reopening —
//!   while the new file is read from its start;
//! - copytruncate and a file that shrinks: read from the start again; for copytruncate the lines
//!   written between our last read and the copy are read from the rotated copy, found beside the
//!   file by name and checked by the bytes just before our offset;
//! - lines longer than the cap keep their head (where Node's messages are) and drop the rest, so
//!   memory stays bounded whatever the input; a file whose first bytes hold NULs is binary and
//!   skipped.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What the tailer counts, for self-observation.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TailStats {
    pub bytes: u64,
    pub lines: u64,
    pub lines_too_long: u64,
    pub rotations: u64,
    pub truncations: u64,
    pub recovered_from_copy: u64,
}

/// Receives every complete line (without its newline). The line may be the truncated head of a
/// longer one.
pub trait LineSink {
    fn line(&mut self, line: &[u8]);
}

impl<F: FnMut(&[u8])> LineSink for F {
    fn line(&mut self, line: &[u8]) {
        self(line)
    }
}

/// Why a file could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailError {
    PermissionDenied,
    Binary,
    Io,
}

impl TailError {
    pub fn as_label(self) -> &'static str {
        match self {
            TailError::PermissionDenied => "permission_denied",
            TailError::Binary => "binary",
            TailError::Io => "io",
        }
    }
}

fn tail_error(e: &std::io::Error) -> TailError {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        TailError::PermissionDenied
    } else {
        TailError::Io
    }
}

/// An open file being read, and the line it has started.
struct Reader {
    file: File,
    id: (u64, u64),
    offset: u64,
    partial: Vec<u8>,
    /// The partial line grew past the cap: its tail is being dropped until the next newline.
    dropping: bool,
    /// The last bytes read before `offset`, to recognise a rotated copy of this file.
    recent: Vec<u8>,
    last_growth: Instant,
}

const RECENT: usize = 64;
/// How long a renamed or deleted file is still drained after its last growth.
const RETIRE_AFTER: Duration = Duration::from_secs(10);

pub struct Tail {
    path: PathBuf,
    max_line: usize,
    current: Option<Reader>,
    retired: Vec<Reader>,
    chunk: Vec<u8>,
    pub stats: TailStats,
    /// The first successful open reads from the end when true (a file already there at start).
    start_at_end: bool,
}

impl Tail {
    pub fn new(path: PathBuf, start_at_end: bool, max_line: usize) -> Tail {
        Tail {
            path,
            max_line: max_line.max(256),
            current: None,
            retired: Vec::new(),
            chunk: vec![0; 256 * 1024],
            stats: TailStats::default(),
            start_at_end,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads whatever is new, following rotations, and hands complete lines to `sink`.
    pub fn poll(&mut self, sink: &mut dyn LineSink) -> Result<(), TailError> {
        // Files renamed or deleted under us: drain what their writers still add.
        let mut retired = std::mem::take(&mut self.retired);
        for r in retired.iter_mut() {
            let _ = self.read_available(r, sink);
        }
        retired.retain(|r| r.last_growth.elapsed() < RETIRE_AFTER);
        self.retired = retired;

        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Deleted: keep draining the open file until it is recreated.
                if let Some(mut r) = self.current.take() {
                    let _ = self.read_available(&mut r, sink);
                    self.retired.push(r);
                    self.stats.rotations += 1;
                }
                return Ok(());
            }
            Err(e) => return Err(tail_error(&e)),
        };
        let id = (meta.dev(), meta.ino());
        match self.current.as_mut() {
            Some(r) if r.id != id => {
                // Renamed away (or deleted and recreated): finish the old one, start the new.
                let mut old = self.current.take().expect("checked");
                let _ = self.read_available(&mut old, sink);
                self.retired.push(old);
                self.stats.rotations += 1;
                self.open(0, sink)?;
            }
            Some(r) if meta.len() < r.offset || !still_ends_with_recent(r) => {
                // Truncated in place (copytruncate, or a writer that shrank it) — possibly
                // written past our offset again since, which only the bytes before it tell.
                self.stats.truncations += 1;
                let recent = std::mem::take(&mut r.recent);
                let offset = r.offset;
                let mut partial = std::mem::take(&mut r.partial);
                let mut dropping = r.dropping;
                if let Some(copy) = find_rotated_copy(&self.path, offset, &recent) {
                    self.stats.recovered_from_copy += 1;
                    if let Ok(mut file) = File::open(&copy) {
                        let cm = file.metadata().map_err(|e| tail_error(&e))?;
                        file.seek(SeekFrom::Start(offset)).map_err(|e| tail_error(&e))?;
                        let mut from_copy = Reader {
                            file,
                            id: (cm.dev(), cm.ino()),
                            offset,
                            partial,
                            dropping,
                            recent: Vec::new(),
                            last_growth: Instant::now(),
                        };
                        let _ = self.read_available(&mut from_copy, sink);
                        partial = from_copy.partial;
                        dropping = from_copy.dropping;
                    }
                }
                // What was left unfinished before the truncation is a line of its own.
                if !partial.is_empty() && !dropping {
                    self.stats.lines += 1;
                    sink.line(&partial);
                }
                let r = self.current.as_mut().expect("checked");
                r.offset = 0;
                r.partial = Vec::new();
                r.dropping = false;
                r.recent.clear();
                r.file.seek(SeekFrom::Start(0)).map_err(|e| tail_error(&e))?;
            }
            Some(_) => {}
            None => {
                let start = if self.start_at_end { meta.len() } else { 0 };
                self.open(start, sink)?;
            }
        }
        // Files that appear later are read from their start.
        self.start_at_end = false;
        let mut current = self.current.take();
        let result = match current.as_mut() {
            Some(r) => self.read_available(r, sink),
            None => Ok(()),
        };
        self.current = current;
        result
    }

    fn open(&mut self, offset: u64, _sink: &mut dyn LineSink) -> Result<(), TailError> {
        let mut file = File::open(&self.path).map_err(|e| tail_error(&e))?;
        let meta = file.metadata().map_err(|e| tail_error(&e))?;
        if offset == 0 && looks_binary(&mut file) {
            return Err(TailError::Binary);
        }
        file.seek(SeekFrom::Start(offset)).map_err(|e| tail_error(&e))?;
        self.current = Some(Reader {
            file,
            id: (meta.dev(), meta.ino()),
            offset,
            partial: Vec::new(),
            dropping: false,
            recent: Vec::new(),
            last_growth: Instant::now(),
        });
        Ok(())
    }

    fn read_available(&mut self, r: &mut Reader, sink: &mut dyn LineSink) -> Result<(), TailError> {
        loop {
            let n = match r.file.read(&mut self.chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(tail_error(&e)),
            };
            r.offset += n as u64;
            r.last_growth = Instant::now();
            self.stats.bytes += n as u64;
            let chunk = &self.chunk[..n];
            // Remember the last bytes read, to recognise a rotated copy later.
            if n >= RECENT {
                r.recent.clear();
                r.recent.extend_from_slice(&chunk[n - RECENT..]);
            } else {
                r.recent.extend_from_slice(chunk);
                let excess = r.recent.len().saturating_sub(RECENT);
                r.recent.drain(..excess);
            }
            split_lines(chunk, r, self.max_line, &mut self.stats, sink);
        }
    }
}

/// Splits a chunk into lines, joining with the partial line carried from the previous chunk.
fn split_lines(chunk: &[u8], r: &mut Reader, max_line: usize, stats: &mut TailStats, sink: &mut dyn LineSink) {
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', chunk) {
        let piece = &chunk[start..nl];
        start = nl + 1;
        stats.lines += 1;
        if r.partial.is_empty() && !r.dropping {
            if piece.len() > max_line {
                stats.lines_too_long += 1;
                sink.line(&piece[..max_line]);
            } else {
                sink.line(piece);
            }
            continue;
        }
        if r.dropping {
            // The head was already handed over when the line crossed the cap.
            r.dropping = false;
            r.partial.clear();
            continue;
        }
        let room = max_line - r.partial.len().min(max_line);
        if piece.len() > room {
            stats.lines_too_long += 1;
        }
        r.partial.extend_from_slice(&piece[..piece.len().min(room)]);
        sink.line(&r.partial);
        r.partial.clear();
    }
    let rest = &chunk[start..];
    if rest.is_empty() || r.dropping {
        return;
    }
    let room = max_line - r.partial.len().min(max_line);
    if rest.len() > room {
        // The line crosses the cap: hand its head over now and drop the rest up to the newline.
        r.partial.extend_from_slice(&rest[..room]);
        stats.lines_too_long += 1;
        sink.line(&r.partial);
        r.partial.clear();
        r.dropping = true;
    } else {
        r.partial.extend_from_slice(rest);
    }
}

/// Whether the bytes just before our offset are still the ones we read there.
fn still_ends_with_recent(r: &Reader) -> bool {
    use std::os::unix::fs::FileExt;
    if r.recent.is_empty() {
        return true;
    }
    let mut buf = [0u8; RECENT];
    let len = r.recent.len();
    match r.file.read_exact_at(&mut buf[..len], r.offset - len as u64) {
        Ok(()) => buf[..len] == r.recent[..],
        Err(_) => false,
    }
}

/// A file whose first KiB holds NUL bytes is not a text log.
fn looks_binary(file: &mut File) -> bool {
    let mut head = [0u8; 1024];
    let n = file.read(&mut head).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(0));
    head[..n].contains(&0)
}

/// Finds the copy a copytruncate rotation made of `path`: a sibling whose name starts with the
/// file's name (`app.log.1`, `app.log-20250101`, pm2-logrotate's `app-out__2025-01-01_00-00-00.log`),
/// modified in the last minutes, at least `offset` long, and holding `recent` just before `offset`.
fn find_rotated_copy(path: &Path, offset: u64, recent: &[u8]) -> Option<PathBuf> {
    let dir = path.parent()?;
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".log").unwrap_or(name);
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let candidate = entry.file_name();
        let Some(candidate) = candidate.to_str() else { continue };
        if candidate == name || !(candidate.starts_with(name) || candidate.starts_with(&format!("{stem}__"))) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let Ok(modified) = meta.modified() else { continue };
        if meta.len() < offset || modified.elapsed().unwrap_or_default() > Duration::from_secs(600) {
            continue;
        }
        if best.as_ref().is_some_and(|(t, _)| *t >= modified) {
            continue;
        }
        if !recent.is_empty()
            && bytes_at(&entry.path(), offset - recent.len() as u64, recent.len()).is_none_or(|b| b != recent)
        {
            continue;
        }
        best = Some((modified, entry.path()));
    }
    best.map(|(_, p)| p)
}

fn bytes_at(path: &Path, at: u64, len: usize) -> Option<Vec<u8>> {
    let mut f = File::open(path).ok()?;
    f.seek(SeekFrom::Start(at)).ok()?;
    let mut buf = vec![0; len];
    f.read_exact(&mut buf).ok()?;
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn collect(tail: &mut Tail) -> Vec<String> {
        let mut lines = Vec::new();
        tail.poll(&mut |l: &[u8]| lines.push(String::from_utf8_lossy(l).into_owned())).unwrap();
        lines
    }

    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn existing_files_start_at_the_end_new_ones_at_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, "old 1\nold 2\n");
        let mut t = Tail::new(p.clone(), true, 1024);
        assert!(collect(&mut t).is_empty());
        append(&p, "new 1\nnew");
        assert_eq!(collect(&mut t), vec!["new 1"]);
        append(&p, " 2\n");
        assert_eq!(collect(&mut t), vec!["new 2"]);
        let q = dir.path().join("b.log");
        append(&q, "first\n");
        let mut t = Tail::new(q, false, 1024);
        assert_eq!(collect(&mut t), vec!["first"]);
    }

    #[test]
    fn rename_and_create_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("app.log");
        append(&p, "");
        let mut t = Tail::new(p.clone(), true, 1024);
        collect(&mut t);
        append(&p, "a\n");
        // The writer keeps its fd: lines written after the rename still land in the old file.
        let mut writer = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        std::fs::rename(&p, dir.path().join("app.log.1")).unwrap();
        writer.write_all(b"b\n").unwrap();
        append(&p, "c\n");
        let mut got = collect(&mut t);
        writer.write_all(b"d\n").unwrap();
        got.extend(collect(&mut t));
        got.sort();
        assert_eq!(got, vec!["a", "b", "c", "d"]);
    }

    #[test]
    fn copytruncate_reads_the_copy_for_what_was_missed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("app.log");
        append(&p, "");
        let mut t = Tail::new(p.clone(), true, 1024);
        collect(&mut t);
        append(&p, "one\n");
        assert_eq!(collect(&mut t), vec!["one"]);
        append(&p, "two\n");
        // logrotate copytruncate: copy, then truncate, between two of our reads.
        std::fs::copy(&p, dir.path().join("app.log.1")).unwrap();
        std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(0).unwrap();
        append(&p, "three\n");
        assert_eq!(collect(&mut t), vec!["two", "three"]);
        assert_eq!(t.stats.recovered_from_copy, 1);
    }

    #[test]
    fn a_file_that_shrinks_is_read_again_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("app.log");
        append(&p, "");
        let mut t = Tail::new(p.clone(), true, 1024);
        collect(&mut t);
        append(&p, "aaaaaaaaaaaaaaa\n");
        collect(&mut t);
        std::fs::write(&p, "b\n").unwrap();
        assert_eq!(collect(&mut t), vec!["b"]);
    }

    #[test]
    fn delete_and_recreate() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("app.log");
        append(&p, "");
        let mut t = Tail::new(p.clone(), true, 1024);
        collect(&mut t);
        append(&p, "x\n");
        std::fs::remove_file(&p).unwrap();
        assert_eq!(collect(&mut t), vec!["x"]);
        append(&p, "y\n");
        assert_eq!(collect(&mut t), vec!["y"]);
    }

    #[test]
    fn long_lines_keep_their_head_and_memory_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("app.log");
        append(&p, "");
        let mut t = Tail::new(p.clone(), true, 300);
        collect(&mut t);
        let long = format!("HEAD{}\nnext\n", "x".repeat(3 << 20));
        append(&p, &long);
        let got = collect(&mut t);
        assert_eq!(got.len(), 2);
        assert!(got[0].starts_with("HEAD") && got[0].len() == 300);
        assert_eq!(got[1], "next");
        assert_eq!(t.stats.lines_too_long, 1);
    }

    #[test]
    fn binary_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("core");
        std::fs::write(&p, b"\x7fELF\x00\x00\x00binary").unwrap();
        let mut t = Tail::new(p, false, 1024);
        assert_eq!(t.poll(&mut |_: &[u8]| {}), Err(TailError::Binary));
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// However a stream is cut into chunks, the lines that come out are the lines that went in
        /// (each cut to the cap), and memory never holds more than the cap.
        #[test]
        fn chunking_never_changes_the_lines(
            lines in proptest::collection::vec(proptest::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..300), 0..40),
            cuts in proptest::collection::vec(1usize..97, 1..20),
            max_line in 256usize..400,
        ) {
            let mut stream = Vec::new();
            for l in &lines {
                stream.extend_from_slice(l);
                stream.push(b'\n');
            }
            let file = tempfile::tempfile().unwrap();
            let mut r = Reader { file, id: (0, 0), offset: 0, partial: Vec::new(), dropping: false, recent: Vec::new(), last_growth: Instant::now() };
            let mut stats = TailStats::default();
            let mut out: Vec<Vec<u8>> = Vec::new();
            let mut at = 0;
            let mut i = 0;
            while at < stream.len() {
                let n = cuts[i % cuts.len()].min(stream.len() - at);
                split_lines(&stream[at..at + n], &mut r, max_line, &mut stats, &mut |l: &[u8]| out.push(l.to_vec()));
                prop_assert!(r.partial.len() <= max_line);
                at += n;
                i += 1;
            }
            let expected: Vec<Vec<u8>> = lines.iter().map(|l| l[..l.len().min(max_line)].to_vec()).collect();
            prop_assert_eq!(out, expected);
        }
    }
}
