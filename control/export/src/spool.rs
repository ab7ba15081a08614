//! The exporter's bounded on-disk spool: a FIFO of messages in segment
//! files in one directory (`<state_dir>/export-spool`).
//!
//! A segment is a file of records, `<id>.seg` with a 20-digit id, read in
//! id order. A record is `[u32 length][u16 subject length][subject][u16 id
//! length][message id][payload]`, little-endian; a torn record at the end
//! of a segment (the daemon was killed mid-write) ends that segment.
//!
//! Appends go to the newest segment, until it holds [`SEGMENT_BYTES`]. The
//! exporter [`Spool::load`]s the oldest segment whole into memory to
//! replay it, and [`Spool::release`]s it (deletes the file) once the
//! stream acknowledged its last message: a crash in between replays it
//! again, and the stream's de-duplication drops what it already has.
//! [`Spool::prepend`] writes messages before every segment: at shutdown,
//! what was still in memory is older than anything on disk.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::Message;

/// A segment is closed for appends once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 1 << 20;
/// A fresh spool's first segment id: prepends count down from it.
const FIRST_ID: u64 = 1 << 40;

/// The spool is at its capacity: the message was not written.
#[derive(Debug)]
pub struct Full;

pub struct Spool {
    dir: PathBuf,
    capacity: u64,
    /// Segments on disk, oldest first: (id, bytes, loaded for replay).
    segments: std::collections::VecDeque<Segment>,
    bytes: u64,
    messages: u64,
    writer: Option<(u64, BufWriter<File>)>,
}

struct Segment {
    id: u64,
    bytes: u64,
    messages: u64,
    loaded: bool,
}

impl Spool {
    /// Open (or create) the spool in `dir`, finding the segments a
    /// previous run left.
    pub fn open(dir: &Path, capacity: u64) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let mut segments = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let path = entry.path();
            let bytes = entry.metadata()?.len();
            let messages = read_segment(&path)?.len() as u64;
            segments.push(Segment {
                id,
                bytes,
                messages,
                loaded: false,
            });
        }
        segments.sort_by_key(|s| s.id);
        Ok(Spool {
            dir: dir.to_path_buf(),
            capacity,
            bytes: segments.iter().map(|s| s.bytes).sum(),
            messages: segments.iter().map(|s| s.messages).sum(),
            segments: segments.into(),
            writer: None,
        })
    }

    /// Nothing on disk (loaded segments not yet released count).
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn messages(&self) -> u64 {
        self.messages
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}.seg"))
    }

    /// Append `msg` to the newest segment (a new one when it is full or
    /// loaded), unless the spool would exceed its capacity.
    pub fn append(&mut self, msg: &Message) -> io::Result<Result<(), Full>> {
        let len = record_len(msg);
        if self.bytes + len > self.capacity {
            return Ok(Err(Full));
        }
        let open = match (&self.writer, self.segments.back()) {
            (Some((id, _)), Some(last)) => {
                *id == last.id && !last.loaded && last.bytes < SEGMENT_BYTES
            }
            _ => false,
        };
        if !open {
            self.flush()?;
            let id = self.segments.back().map_or(FIRST_ID, |s| s.id + 1);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path(id))?;
            self.writer = Some((id, BufWriter::new(file)));
            self.segments.push_back(Segment {
                id,
                bytes: 0,
                messages: 0,
                loaded: false,
            });
        }
        let (_, w) = self.writer.as_mut().expect("opened above");
        write_record(w, msg)?;
        let last = self.segments.back_mut().expect("pushed above");
        last.bytes += len;
        last.messages += 1;
        self.bytes += len;
        self.messages += 1;
        Ok(Ok(()))
    }

    /// Write what the current segment buffers to its file.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some((_, w)) = &mut self.writer {
            w.flush()?;
        }
        Ok(())
    }

    /// Write `msgs` as one segment before every other (they are older),
    /// whatever the capacity: at shutdown, memory is worth keeping.
    pub fn prepend(&mut self, msgs: &[Message]) -> io::Result<()> {
        if msgs.is_empty() {
            return Ok(());
        }
        let id = self.segments.front().map_or(FIRST_ID, |s| s.id - 1);
        let path = self.path(id);
        let mut w = BufWriter::new(File::create(&path)?);
        let mut bytes = 0;
        for m in msgs {
            write_record(&mut w, m)?;
            bytes += record_len(m);
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        self.segments.push_front(Segment {
            id,
            bytes,
            messages: msgs.len() as u64,
            loaded: false,
        });
        self.bytes += bytes;
        self.messages += msgs.len() as u64;
        Ok(())
    }

    /// Read the oldest segment not yet loaded; it stays on disk until
    /// [`Spool::release`]. `None`: every segment is loaded.
    pub fn load(&mut self) -> io::Result<Option<(u64, Vec<Message>)>> {
        let Some(i) = self.segments.iter().position(|s| !s.loaded) else {
            return Ok(None);
        };
        let id = self.segments[i].id;
        if matches!(&self.writer, Some((w, _)) if *w == id) {
            self.flush()?;
            self.writer = None;
        }
        self.segments[i].loaded = true;
        Ok(Some((id, read_segment(&self.path(id))?)))
    }

    /// Delete segment `id`: its last message was acknowledged.
    pub fn release(&mut self, id: u64) -> io::Result<()> {
        if let Some(i) = self.segments.iter().position(|s| s.id == id) {
            let s = self.segments.remove(i).expect("found");
            self.bytes -= s.bytes;
            self.messages -= s.messages;
            match fs::remove_file(self.path(id)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn record_len(m: &Message) -> u64 {
    (4 + 2 + m.subject.len() + 2 + m.id.len() + m.payload.len()) as u64
}

fn write_record(w: &mut impl Write, m: &Message) -> io::Result<()> {
    let rest = 2 + m.subject.len() + 2 + m.id.len() + m.payload.len();
    w.write_all(&(rest as u32).to_le_bytes())?;
    w.write_all(&(m.subject.len() as u16).to_le_bytes())?;
    w.write_all(m.subject.as_bytes())?;
    w.write_all(&(m.id.len() as u16).to_le_bytes())?;
    w.write_all(m.id.as_bytes())?;
    w.write_all(&m.payload)
}

/// Every whole record of a segment file, in order.
fn read_segment(path: &Path) -> io::Result<Vec<Message>> {
    let mut buf = Vec::new();
    File::open(path)?.read_to_end(&mut buf)?;
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(m) = parse_record(&buf, &mut at) {
        out.push(m);
    }
    Ok(out)
}

fn parse_record(buf: &[u8], at: &mut usize) -> Option<Message> {
    let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
        let s = buf.get(*at..at.checked_add(n)?)?;
        *at += n;
        Some(s)
    };
    let mut p = *at;
    let rest = u32::from_le_bytes(take(&mut p, 4)?.try_into().ok()?) as usize;
    let end = p.checked_add(rest)?;
    let record = buf.get(p..end)?;
    let mut q = 0usize;
    let field = |q: &mut usize| -> Option<&[u8]> {
        let n = u16::from_le_bytes(record.get(*q..*q + 2)?.try_into().ok()?) as usize;
        let s = record.get(*q + 2..*q + 2 + n)?;
        *q += 2 + n;
        Some(s)
    };
    let subject = std::str::from_utf8(field(&mut q)?).ok()?.to_string();
    let id = std::str::from_utf8(field(&mut q)?).ok()?.to_string();
    let payload = Bytes::copy_from_slice(record.get(q..)?);
    *at = end;
    Some(Message {
        subject,
        id,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: usize) -> Message {
        Message {
            subject: "rstwall.gw.events".into(),
            id: format!("gw.1.{n}"),
            payload: Bytes::from(vec![b'x'; 100]),
        }
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rstwall-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn ids(msgs: &[Message]) -> Vec<String> {
        msgs.iter().map(|m| m.id.clone()).collect()
    }

    #[test]
    fn messages_come_back_in_order_across_segments_and_reopening() {
        let dir = tempdir("order");
        let mut s = Spool::open(&dir, 10 << 20).unwrap();
        let n = (SEGMENT_BYTES / record_len(&msg(0))) as usize + 10;
        for i in 0..n {
            s.append(&msg(i)).unwrap().unwrap();
        }
        s.flush().unwrap();
        assert_eq!(s.messages(), n as u64);
        drop(s);
        let mut s = Spool::open(&dir, 10 << 20).unwrap();
        assert_eq!(s.messages(), n as u64, "found again on disk");
        s.prepend(&[msg(999)]).unwrap();
        let mut got = Vec::new();
        while let Some((id, msgs)) = s.load().unwrap() {
            got.extend(ids(&msgs));
            s.release(id).unwrap();
        }
        let mut want = vec![msg(999).id];
        want.extend((0..n).map(|i| msg(i).id));
        assert_eq!(got, want);
        assert!(s.is_empty());
        assert_eq!((s.bytes(), s.messages()), (0, 0));
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "segments deleted");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_spool_refuses_and_a_torn_record_ends_its_segment() {
        let dir = tempdir("full");
        let one = record_len(&msg(0));
        let mut s = Spool::open(&dir, one * 3).unwrap();
        for i in 0..3 {
            s.append(&msg(i)).unwrap().unwrap();
        }
        assert!(s.append(&msg(3)).unwrap().is_err(), "over capacity");
        s.flush().unwrap();
        // A loaded segment takes no more appends: the next one is new.
        let (id, msgs) = s.load().unwrap().unwrap();
        assert_eq!(msgs.len(), 3);
        s.release(id).unwrap();
        s.append(&msg(4)).unwrap().unwrap();
        s.flush().unwrap();
        drop(s);
        // Tear the last record.
        let seg = fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
        let len = fs::metadata(&seg).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 7)
            .unwrap();
        let mut s = Spool::open(&dir, one * 3).unwrap();
        let (_, msgs) = s.load().unwrap().unwrap();
        assert!(msgs.is_empty(), "the torn record is not read");
        fs::remove_dir_all(&dir).unwrap();
    }
}
