//! How the list is cut for Slurm: array chunks that fit `MaxArraySize`, or a task count.
//!
//! Pure arithmetic over counts, using the same chunk rule as [`crate::domain::task_share`], which
//! `pseg-step` applies at run time.

use crate::domain::task_share::chunk_count;

/// A job array over the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrayLayout {
    /// Granules per element, as used (at least the requested size).
    pub chunk_size: usize,
    /// Elements, indexed `0..chunks`.
    pub chunks: usize,
    /// The chunk size asked for, before growing to fit.
    pub requested: usize,
}

impl ArrayLayout {
    pub fn last_index(&self) -> usize {
        self.chunks.saturating_sub(1)
    }

    pub fn grown(&self) -> bool {
        self.chunk_size != self.requested
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("this cluster's MaxArraySize is 0, so job arrays are disabled; use --mode tasks")]
    ArraysDisabled,
}

/// Chunks of `requested` granules, grown until the highest index is below `max_array_size`.
pub fn array_layout(
    n_granules: usize,
    requested: usize,
    max_array_size: usize,
) -> Result<ArrayLayout, LayoutError> {
    if max_array_size == 0 {
        return Err(LayoutError::ArraysDisabled);
    }
    let requested = requested.max(1);
    let chunk_size = requested.max(n_granules.div_ceil(max_array_size));
    Ok(ArrayLayout {
        chunk_size,
        chunks: chunk_count(n_granules, chunk_size),
        requested,
    })
}

/// Tasks mode: no more tasks than granules (an idle task would hold cores for nothing).
pub fn task_count(n_granules: usize, requested: usize) -> usize {
    requested.min(n_granules).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_fits_max_array_size() {
        for n in 1..300 {
            for requested in 1..6 {
                for max in 1..40 {
                    let a = array_layout(n, requested, max).unwrap();
                    assert!(a.last_index() < max, "n={n} k={requested} max={max}: {a:?}");
                    assert!(a.chunk_size >= requested);
                    assert!(a.chunks * a.chunk_size >= n);
                    assert!((a.chunks - 1) * a.chunk_size < n, "no empty element");
                    // Smallest chunk size that fits.
                    if a.grown() {
                        assert!(chunk_count(n, a.chunk_size - 1) > max);
                    }
                }
            }
        }
    }

    #[test]
    fn examples() {
        let a = array_layout(2003, 1, 1001).unwrap();
        assert_eq!((a.chunk_size, a.chunks, a.grown()), (3, 668, true));
        let a = array_layout(1001, 1, 1001).unwrap();
        assert_eq!((a.chunk_size, a.chunks, a.last_index()), (1, 1001, 1000));
        let a = array_layout(10, 4, 1001).unwrap();
        assert_eq!((a.chunk_size, a.chunks, a.grown()), (4, 3, false));
        assert_eq!(array_layout(5, 1, 0), Err(LayoutError::ArraysDisabled));
    }

    #[test]
    fn tasks_never_outnumber_granules() {
        assert_eq!(task_count(3, 8), 3);
        assert_eq!(task_count(30, 8), 8);
    }
}
