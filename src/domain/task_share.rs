//! Which granules one Slurm task processes: the pure mapping from (array index, chunk size,
//! task rank, task count) to indices into the granule list.
//!
//! The rule, shared by `pseg-slurm gen` (which sizes the array) and `pseg-step` (which picks
//! its granules):
//! - an array element `i` with chunk size `K` owns granules `[i*K, min((i+1)*K, N))`;
//!   outside an array job the "chunk" is the whole list;
//! - within the chunk, the step's tasks share it, each claiming one granule at a time in the
//!   ledger (so a fast task simply takes more); `procid` and `ntasks` are only checked here.
//!
//! [`Place::from_values`] and [`Place::chunk`] are pure; [`Place::from_env`] is the only
//! reader of the process environment. Nothing here touches the list or the file system.

use std::ops::Range;

/// Slurm's array element index (unset outside job arrays).
pub const ENV_ARRAY_TASK_ID: &str = "SLURM_ARRAY_TASK_ID";
/// Rank of this task within the step (unset outside `srun`: rank 0).
pub const ENV_PROCID: &str = "SLURM_PROCID";
/// Number of tasks in the step (unset outside `srun`: one task).
pub const ENV_NTASKS: &str = "SLURM_NTASKS";

/// Where this process sits in the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// The array element index, when running as an element of a job array.
    pub array_index: Option<usize>,
    /// Granules per array element (`--chunk-size`); only used with an array index.
    pub chunk_size: Option<usize>,
    /// This task's rank, `0..ntasks`.
    pub procid: usize,
    /// Tasks sharing the chunk; at least 1.
    pub ntasks: usize,
}

/// A Slurm variable, or the chunk size, that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error(
        "environment variable {var}={value:?} is not a whole number; is this really a Slurm job?"
    )]
    NotANumber { var: &'static str, value: String },
    #[error("environment variable {var} is not valid UTF-8")]
    NotUnicode { var: &'static str },
    #[error("environment variable {ENV_NTASKS}=0: a step needs at least one task")]
    NoTasks,
    #[error(
        "{ENV_PROCID}={procid} but {ENV_NTASKS}={ntasks}: the rank must be below the task count; \
         was the environment copied from another job?"
    )]
    RankOutOfRange { procid: usize, ntasks: usize },
    #[error(
        "{ENV_ARRAY_TASK_ID}={index} is set but no --chunk-size was given, so every array \
         element would process the whole list; pass --chunk-size K (pseg-slurm gen does)"
    )]
    ArrayWithoutChunkSize { index: usize },
    #[error("--chunk-size 0: an array element needs at least one granule")]
    ZeroChunkSize,
    #[error(
        "{ENV_ARRAY_TASK_ID}={index} with --chunk-size {chunk_size} starts at granule {} of a \
         list of {granules} granule(s), which array elements 0-{} cover: was the array \
         submitted for another list or chunk size? Submit again with `pseg-slurm gen`",
        index.saturating_mul(*chunk_size).saturating_add(1),
        chunk_count(*granules, *chunk_size).saturating_sub(1)
    )]
    PastTheEnd {
        index: usize,
        chunk_size: usize,
        granules: usize,
    },
}

impl Place {
    /// The place of a lone process: not an array, one task, all granules.
    #[cfg(test)]
    fn everything() -> Place {
        Place {
            array_index: None,
            chunk_size: None,
            procid: 0,
            ntasks: 1,
        }
    }

    /// Reads `SLURM_ARRAY_TASK_ID`, `SLURM_PROCID` and `SLURM_NTASKS`. Outside Slurm (none
    /// set) this is the place of a lone process: not an array, one task, all granules.
    pub fn from_env(chunk_size: Option<usize>) -> Result<Place, MappingError> {
        let read = |var: &'static str| -> Result<Option<String>, MappingError> {
            match std::env::var(var) {
                Ok(v) => Ok(Some(v)),
                Err(std::env::VarError::NotPresent) => Ok(None),
                Err(std::env::VarError::NotUnicode(_)) => Err(MappingError::NotUnicode { var }),
            }
        };
        Place::from_values(
            read(ENV_ARRAY_TASK_ID)?.as_deref(),
            read(ENV_PROCID)?.as_deref(),
            read(ENV_NTASKS)?.as_deref(),
            chunk_size,
        )
    }

    /// Builds a place from the raw variable values (`None` = unset). Pure.
    pub fn from_values(
        array_task_id: Option<&str>,
        procid: Option<&str>,
        ntasks: Option<&str>,
        chunk_size: Option<usize>,
    ) -> Result<Place, MappingError> {
        let array_index = array_task_id
            .map(|v| parse_var(ENV_ARRAY_TASK_ID, v))
            .transpose()?;
        let procid = procid.map(|v| parse_var(ENV_PROCID, v)).transpose()?;
        let ntasks = ntasks.map(|v| parse_var(ENV_NTASKS, v)).transpose()?;
        let place = Place {
            array_index,
            chunk_size,
            procid: procid.unwrap_or(0),
            ntasks: ntasks.unwrap_or(1),
        };
        place.validate()?;
        Ok(place)
    }

    /// Checks the place's invariants: a task rank below a task count of at least one, a chunk
    /// size (above zero) for an array element.
    pub fn validate(&self) -> Result<(), MappingError> {
        if self.ntasks == 0 {
            return Err(MappingError::NoTasks);
        }
        if self.procid >= self.ntasks {
            return Err(MappingError::RankOutOfRange {
                procid: self.procid,
                ntasks: self.ntasks,
            });
        }
        match (self.array_index, self.chunk_size) {
            (Some(index), None) => Err(MappingError::ArrayWithoutChunkSize { index }),
            (_, Some(0)) => Err(MappingError::ZeroChunkSize),
            _ => Ok(()),
        }
    }

    /// Like [`Place::chunk`], but an array element with no granule of a non-empty list is
    /// an error: the array was sized for another list (or chunk size).
    pub fn owned_chunk(&self, n_granules: usize) -> Result<Range<usize>, MappingError> {
        let chunk = self.chunk(n_granules);
        match (self.array_index, self.chunk_size) {
            (Some(index), Some(chunk_size)) if chunk.is_empty() && n_granules > 0 => {
                Err(MappingError::PastTheEnd {
                    index,
                    chunk_size,
                    granules: n_granules,
                })
            }
            _ => Ok(chunk),
        }
    }

    /// The slice of the list this place's array element owns (all of it outside arrays).
    /// Empty when the element index lies past the end of the list.
    pub fn chunk(&self, n_granules: usize) -> Range<usize> {
        match (self.array_index, self.chunk_size) {
            (Some(i), Some(k)) => {
                let start = i.saturating_mul(k).min(n_granules);
                let end = i.saturating_add(1).saturating_mul(k).min(n_granules);
                start..end
            }
            _ => 0..n_granules,
        }
    }
}

fn parse_var(var: &'static str, value: &str) -> Result<usize, MappingError> {
    value.trim().parse().map_err(|_| MappingError::NotANumber {
        var,
        value: value.to_string(),
    })
}

/// Number of array elements needed for `n_granules` in chunks of `chunk_size` (> 0).
pub fn chunk_count(n_granules: usize, chunk_size: usize) -> usize {
    n_granules.div_ceil(chunk_size.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A strided share of the chunk (task `procid` takes every `ntasks`-th granule from its
    /// own rank), for the tests of the chunk rule: every granule in exactly one share.
    ///
    /// `place` must satisfy [`Place::validate`] (as every `Place` from [`Place::from_values`]
    /// does); a place with `ntasks == 0` is treated as one task.
    fn select(n_granules: usize, place: &Place) -> std::iter::StepBy<Range<usize>> {
        let chunk = place.chunk(n_granules);
        let first = chunk.start.saturating_add(place.procid).min(chunk.end);
        (first..chunk.end).step_by(place.ntasks.max(1))
    }

    fn place(array: Option<usize>, k: Option<usize>, procid: usize, ntasks: usize) -> Place {
        let p = Place {
            array_index: array,
            chunk_size: k,
            procid,
            ntasks,
        };
        p.validate().unwrap();
        p
    }

    /// Every granule is processed exactly once, by tasks whose loads differ by at most one,
    /// for every list length, chunk size and task count in small ranges.
    #[test]
    fn every_granule_exactly_once() {
        for n in 0..40 {
            for ntasks in 1..7 {
                // Not an array: tasks share the whole list.
                let mut seen = vec![0u32; n];
                let mut loads = Vec::new();
                for procid in 0..ntasks {
                    let got: Vec<_> = select(n, &place(None, None, procid, ntasks)).collect();
                    loads.push(got.len());
                    got.iter().for_each(|&g| seen[g] += 1);
                }
                assert!(seen.iter().all(|&c| c == 1), "n={n} ntasks={ntasks}");
                let (lo, hi) = (loads.iter().min(), loads.iter().max());
                assert!(hi.unwrap() - lo.unwrap() <= 1, "n={n} loads={loads:?}");

                // An array: elements own chunks, tasks share each chunk.
                for k in 1..9 {
                    let mut seen = vec![0u32; n];
                    for i in 0..chunk_count(n, k) {
                        let mut loads = Vec::new();
                        for procid in 0..ntasks {
                            let got: Vec<_> =
                                select(n, &place(Some(i), Some(k), procid, ntasks)).collect();
                            assert!(got.iter().all(|&g| g / k == i), "chunk {i} strays");
                            assert!(got.windows(2).all(|w| w[0] < w[1]), "not in list order");
                            loads.push(got.len());
                            got.iter().for_each(|&g| seen[g] += 1);
                        }
                        let (lo, hi) = (loads.iter().min(), loads.iter().max());
                        assert!(hi.unwrap() - lo.unwrap() <= 1);
                    }
                    assert!(
                        seen.iter().all(|&c| c == 1),
                        "n={n} k={k} ntasks={ntasks}: {seen:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn chunk_bounds() {
        assert_eq!(place(Some(0), Some(3), 0, 1).chunk(10), 0..3);
        assert_eq!(place(Some(3), Some(3), 0, 1).chunk(10), 9..10);
        assert_eq!(place(Some(4), Some(3), 0, 1).chunk(10), 10..10);
        assert_eq!(place(None, Some(3), 0, 1).chunk(10), 0..10);
        assert_eq!(chunk_count(10, 3), 4);
        assert_eq!(chunk_count(9, 3), 3);
        assert_eq!(chunk_count(0, 3), 0);
    }

    #[test]
    fn an_element_past_the_end_names_the_list_length_chunk_size_and_element() {
        assert_eq!(place(Some(3), Some(3), 0, 1).owned_chunk(10), Ok(9..10));
        assert_eq!(place(None, None, 0, 1).owned_chunk(10), Ok(0..10));
        let e = place(Some(4), Some(3), 0, 1).owned_chunk(10).unwrap_err();
        assert_eq!(
            e,
            MappingError::PastTheEnd {
                index: 4,
                chunk_size: 3,
                granules: 10
            }
        );
        let text = e.to_string();
        assert!(
            text.starts_with(
                "SLURM_ARRAY_TASK_ID=4 with --chunk-size 3 starts at granule 13 of a list of \
                 10 granule(s), which array elements 0-3 cover"
            ),
            "{text}"
        );
    }

    #[test]
    fn strided_within_chunk() {
        let got: Vec<_> = select(20, &place(Some(1), Some(7), 1, 3)).collect();
        assert_eq!(got, vec![8, 11]);
        let got: Vec<_> = select(5, &place(None, None, 4, 5)).collect();
        assert_eq!(got, vec![4]);
        let got: Vec<_> = select(3, &place(None, None, 4, 5)).collect();
        assert!(got.is_empty());
    }

    #[test]
    fn outside_slurm_everything() {
        let p = Place::from_values(None, None, None, None).unwrap();
        assert_eq!(p, Place::everything());
        assert_eq!(select(4, &p).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        // A chunk size alone (not an array job) changes nothing.
        let p = Place::from_values(None, None, None, Some(2)).unwrap();
        assert_eq!(select(4, &p).count(), 4);
    }

    #[test]
    fn from_values_reads_slurm_numbers() {
        let p = Place::from_values(Some("7"), Some("2"), Some("4"), Some(10)).unwrap();
        assert_eq!(
            p,
            Place {
                array_index: Some(7),
                chunk_size: Some(10),
                procid: 2,
                ntasks: 4
            }
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = Place::from_values(Some("x"), None, None, Some(1)).unwrap_err();
        assert_eq!(
            e,
            MappingError::NotANumber {
                var: ENV_ARRAY_TASK_ID,
                value: "x".into()
            }
        );
        assert!(e.to_string().contains("SLURM_ARRAY_TASK_ID"));
        let e = Place::from_values(None, Some("-1"), None, None).unwrap_err();
        assert!(e.to_string().contains("SLURM_PROCID"), "{e}");
        let e = Place::from_values(None, None, Some(""), None).unwrap_err();
        assert!(e.to_string().contains("SLURM_NTASKS"), "{e}");
        let e = Place::from_values(None, Some("4"), Some("4"), None).unwrap_err();
        assert_eq!(
            e,
            MappingError::RankOutOfRange {
                procid: 4,
                ntasks: 4
            }
        );
        assert!(e.to_string().contains("SLURM_PROCID=4"));
        let e = Place::from_values(None, None, Some("0"), None).unwrap_err();
        assert_eq!(e, MappingError::NoTasks);
        let e = Place::from_values(Some("3"), None, None, None).unwrap_err();
        assert!(e.to_string().contains("--chunk-size"), "{e}");
        let e = Place::from_values(Some("3"), None, None, Some(0)).unwrap_err();
        assert_eq!(e, MappingError::ZeroChunkSize);
    }
}
