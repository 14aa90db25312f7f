//! Workload files for `snapsim apply`: the writes to replay through a live snapshot.
//!
//! Two forms are read:
//! - a text file, one request per line (`#` starts a comment):
//!   ```text
//!   write origin 1428 1          # SECTOR SECTORS, data tagged w<index>s<sector>.
//!   write snapshot 4024 8 mytag. # an explicit tag, repeated through each sector
//!   flush origin
//!   ```
//! - a golden vector's `vector.json` (its `writes` list), so a kernel run can
//!   be replayed as it was.
//!
//! Write number `k`'s sector `j` holds its tag (default `w<k:05>s<j:04>.`)
//! repeated and cut at 512 bytes — the vectors' own pattern.

use std::path::Path;

use engine::SECTOR_BYTES;

use super::CliError;
use super::limits::{WORKLOAD_FILE_BYTES_MAX, WORKLOAD_REQUESTS_MAX, WRITE_SECTORS_MAX, read_text_bounded};

/// Which device of the snapshot pair a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Origin,
    Snapshot,
}

/// One request of a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Write { target: Target, sector: u64, sectors: u64, tag: Option<String> },
    Flush { target: Target },
}

/// The data of write number `index`: each sector its tag, repeated.
pub fn write_data(index: usize, sectors: u64, tag: Option<&str>) -> Vec<u8> {
    let mut data = Vec::with_capacity(sectors as usize * SECTOR_BYTES);
    for j in 0..sectors {
        let tag = match tag {
            Some(tag) => tag.to_string(),
            None => format!("w{index:05}s{j:04}."),
        };
        data.extend(tag.as_bytes().iter().copied().cycle().take(SECTOR_BYTES));
    }
    data
}

fn parse_target(word: &str, line: usize) -> Result<Target, CliError> {
    match word {
        "origin" => Ok(Target::Origin),
        "snapshot" | "snap" => Ok(Target::Snapshot),
        other => Err(CliError::bad_input(format!("line {line}: unknown device {other:?} (expected origin or snapshot)"))),
    }
}

/// Parses the text form.
pub fn parse_text(text: &str) -> Result<Vec<Request>, CliError> {
    let mut requests = Vec::new();
    for (number, raw) in text.lines().enumerate() {
        let line = number + 1;
        let words: Vec<&str> = raw.split('#').next().unwrap_or("").split_whitespace().collect();
        let number_at = |index: usize, what: &str| -> Result<u64, CliError> {
            let word = words.get(index).ok_or_else(|| CliError::bad_input(format!("line {line}: missing {what}")))?;
            word.parse().map_err(|_| CliError::bad_input(format!("line {line}: {what} {word:?} is not a number")))
        };
        match words.first() {
            None => continue,
            Some(&"write") => {
                let target = parse_target(words.get(1).copied().unwrap_or(""), line)?;
                let (sector, sectors) = (number_at(2, "sector")?, number_at(3, "sector count")?);
                check_write(sector, sectors).map_err(|e| e.context(format!("line {line}")))?;
                let tag = words.get(4).map(|t| t.to_string());
                if tag.as_ref().is_some_and(|t| t.len() > SECTOR_BYTES) {
                    return Err(CliError::bad_input(format!("line {line}: a tag longer than a sector ({SECTOR_BYTES} bytes)")));
                }
                if let Some(extra) = words.get(5) {
                    return Err(CliError::bad_input(format!("line {line}: unexpected {extra:?} after the tag")));
                }
                requests.push(Request::Write { target, sector, sectors, tag });
            }
            Some(&"flush") => {
                requests.push(Request::Flush { target: parse_target(words.get(1).copied().unwrap_or(""), line)? });
                if let Some(extra) = words.get(2) {
                    return Err(CliError::bad_input(format!("line {line}: unexpected {extra:?}")));
                }
            }
            Some(other) => return Err(CliError::bad_input(format!("line {line}: unknown request {other:?} (expected write or flush)"))),
        }
        check_count(requests.len())?;
    }
    Ok(requests)
}

/// Parses a golden vector's `vector.json`.
pub fn parse_vector(json: &str) -> Result<Vec<Request>, CliError> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| CliError::bad_input(format!("vector.json: {e}")))?;
    let writes = value["writes"].as_array().ok_or_else(|| CliError::bad_input("vector.json has no writes list"))?;
    check_count(writes.len())?;
    writes
        .iter()
        .enumerate()
        .map(|(index, write)| {
            let field = |name: &str| {
                write[name].as_u64().ok_or_else(|| CliError::bad_input(format!("vector.json write {index}: no {name} (a number of sectors)")))
            };
            let target = parse_target(write["device"].as_str().unwrap_or(""), index + 1).map_err(|e| e.context("vector.json"))?;
            let (sector, sectors) = (field("sector")?, field("sectors")?);
            check_write(sector, sectors).map_err(|e| e.context(format!("vector.json write {index}")))?;
            Ok(Request::Write { target, sector, sectors, tag: None })
        })
        .collect()
}

/// A write's sector count, before its data is built.
fn check_write(sector: u64, sectors: u64) -> Result<(), CliError> {
    if sectors == 0 {
        return Err(CliError::bad_input("a write of 0 sectors"));
    }
    if sectors > WRITE_SECTORS_MAX {
        return Err(CliError::bad_input(format!("a write of {sectors} sectors: at most {WRITE_SECTORS_MAX} sectors per request")));
    }
    if sector.checked_add(sectors).is_none() {
        return Err(CliError::bad_input(format!("sector {sector} + {sectors} sectors overflows")));
    }
    Ok(())
}

fn check_count(requests: usize) -> Result<(), CliError> {
    if requests > WORKLOAD_REQUESTS_MAX {
        return Err(CliError::bad_input(format!("more than {WORKLOAD_REQUESTS_MAX} requests")));
    }
    Ok(())
}

/// Refuses a workload whose writes reach past the end of a device of
/// `device_sectors` (origin and snapshot are the same size), naming the
/// first such request; run before anything is opened for writing.
pub fn check_fits(requests: &[Request], device_sectors: u64) -> Result<(), CliError> {
    for (index, request) in requests.iter().enumerate() {
        if let Request::Write { sector, sectors, .. } = *request {
            if sector.checked_add(sectors).is_none_or(|end| end > device_sectors) {
                return Err(CliError::bad_input(format!(
                    "request {}: write of sectors {sector}..{} is past the end of the {device_sectors}-sector origin",
                    index + 1,
                    sector.saturating_add(sectors)
                )));
            }
        }
    }
    Ok(())
}

/// Reads a workload file in either form (at most
/// [`WORKLOAD_FILE_BYTES_MAX`] bytes).
pub fn load(path: &Path) -> Result<Vec<Request>, CliError> {
    let text = read_text_bounded(path, WORKLOAD_FILE_BYTES_MAX).map_err(|e| CliError::bad_input(format!("workload {e}")))?;
    let requests = if path.extension().is_some_and(|ext| ext == "json") { parse_vector(&text) } else { parse_text(&text) };
    requests.map_err(|e| e.context(format!("workload {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_text_form() {
        let requests = parse_text("# a workload\nwrite origin 8 2\n\nwrite snapshot 0 1 tag. # comment\nflush origin\n").unwrap();
        assert_eq!(
            requests,
            vec![
                Request::Write { target: Target::Origin, sector: 8, sectors: 2, tag: None },
                Request::Write { target: Target::Snapshot, sector: 0, sectors: 1, tag: Some("tag.".into()) },
                Request::Flush { target: Target::Origin },
            ]
        );
        assert!(parse_text("write origin x 2").unwrap_err().to_string().contains("line 1: sector \"x\" is not a number"));
        assert!(parse_text("erase origin 1 1").unwrap_err().to_string().contains("unknown request"));
    }

    #[test]
    fn huge_writes_are_refused_before_their_data_is_built() {
        for line in ["write origin 0 18446744073709551615", "write origin 0 36028797018963968", "write origin 18446744073709551615 1"] {
            assert!(parse_text(line).is_err(), "{line}");
        }
        let requests = parse_text("write origin 60 8").unwrap();
        assert!(check_fits(&requests, 64).unwrap_err().to_string().contains("past the end of the 64-sector origin"));
        assert!(check_fits(&requests, 68).is_ok());
    }

    #[test]
    fn data_follows_the_vector_pattern() {
        let data = write_data(1, 2, None);
        assert_eq!(&data[..24], b"w00001s0000.w00001s0000.");
        assert_eq!(&data[512..524], b"w00001s0001.");
        assert_eq!(data.len(), 1024);
    }
}
