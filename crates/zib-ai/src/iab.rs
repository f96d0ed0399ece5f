//! IAB Content Taxonomy 3.0 categories (tier 1 and a set of tier 2), ranked against a
//! video's text by embedding similarity (zero-shot).
//!
//! Each category is embedded once per [`Embedder`] as `Name: what it is about`
//! (`iab.tsv`); the video's text is embedded in chunks whose mean is its direction.
//! Score: the cosine mapped linearly so that [`COS_UNRELATED`] is 0.0 and
//! [`COS_ON_TOPIC`] is 1.0, clamped: MiniLM puts unrelated English texts near 0.0–0.1
//! and a text and its topic's description near 0.3–0.5 (a cooking transcript: 0.32 to
//! "Healthy Cooking and Eating", 0.30 to "Cooking"), so `(cos+1)/2` would squeeze
//! every category into 0.5–0.75.

use zib_proto::sidecar::IabCategory;

use crate::embed::Embedder;
use crate::AiError;

/// The taxonomy rows: unique id, parent id (empty for tier 1), name, description.
const TAXONOMY: &str = include_str!("iab.tsv");
/// A cosine at or below this scores 0.0.
pub const COS_UNRELATED: f32 = 0.05;
/// A cosine at or above this scores 1.0.
pub const COS_ON_TOPIC: f32 = 0.55;
/// Words per embedded chunk of the video's text: about 200 WordPiece tokens, under
/// the model's 256.
const CHUNK_WORDS: usize = 150;
/// At most this many chunks are embedded (spread evenly over the text), so a
/// two-hour transcript costs what a twenty-minute one does.
const MAX_CHUNKS: usize = 32;

/// One category of the taxonomy as shipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Category {
    pub id: &'static str,
    /// `None` for tier 1.
    pub parent: Option<&'static str>,
    pub name: &'static str,
    /// What the embedder compares the video's text with.
    pub description: &'static str,
}

impl Category {
    pub fn tier(&self) -> u8 {
        if self.parent.is_some() {
            2
        } else {
            1
        }
    }
}

/// Every category shipped, in file order.
pub fn categories() -> Vec<Category> {
    TAXONOMY
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut cols = l.split('\t');
            let id = cols.next()?;
            let parent = cols.next()?;
            let name = cols.next()?;
            let description = cols.next()?;
            Some(Category {
                id,
                parent: (!parent.is_empty()).then_some(parent),
                name,
                description,
            })
        })
        .collect()
}

/// Every category, best first, scored against `text`. Empty (or blank) text gives an
/// empty list: there is nothing to classify.
pub fn rank(embedder: &Embedder, text: &str) -> Result<Vec<IabCategory>, AiError> {
    let chunks = chunks(text);
    if chunks.is_empty() {
        return Ok(Vec::new());
    }
    let cats = categories();
    let labels = embedder.cached("iab-3.0", || {
        let texts: Vec<String> = cats
            .iter()
            .map(|c| format!("{}: {}", c.name, c.description))
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        embedder.embed(&refs)
    })?;
    let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
    let Some(doc) = mean_direction(&embedder.embed(&refs)?) else {
        return Ok(Vec::new());
    };
    let mut ranked: Vec<IabCategory> = cats
        .iter()
        .zip(labels.iter())
        .map(|(c, v)| IabCategory {
            id: c.id.to_string(),
            name: c.name.to_string(),
            tier: c.tier(),
            score: f64::from(score(crate::embed::cosine(&doc, v))),
        })
        .collect();
    ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok(ranked)
}

/// The 0.0–1.0 score of a cosine (see the module doc); NaN scores 0.
pub fn score(cos: f32) -> f32 {
    let s = (cos - COS_UNRELATED) / (COS_ON_TOPIC - COS_UNRELATED);
    if s.is_nan() {
        0.0
    } else {
        s.clamp(0.0, 1.0)
    }
}

/// The unit mean of unit vectors; `None` when there are none or they cancel out.
pub(crate) fn mean_direction(vectors: &[Vec<f32>]) -> Option<Vec<f32>> {
    let first = vectors.first()?;
    let mut sum = vec![0f32; first.len()];
    for v in vectors {
        for (s, x) in sum.iter_mut().zip(v) {
            *s += x;
        }
    }
    let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm < 1e-6 {
        return None;
    }
    Some(sum.into_iter().map(|x| x / norm).collect())
}

/// `text` cut into runs of [`CHUNK_WORDS`] words, at most [`MAX_CHUNKS`] of them
/// taken evenly across it.
fn chunks(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let all: Vec<String> = words.chunks(CHUNK_WORDS).map(|c| c.join(" ")).collect();
    if all.len() <= MAX_CHUNKS {
        return all;
    }
    (0..MAX_CHUNKS)
        .map(|i| all[i * all.len() / MAX_CHUNKS].clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_taxonomy_file_parses_with_unique_ids_and_known_parents() {
        let cats = categories();
        let lines = TAXONOMY
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .count();
        assert_eq!(cats.len(), lines, "a row without four columns");
        let mut ids: Vec<&str> = cats.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), cats.len(), "duplicate ids");
        for c in &cats {
            if let Some(p) = c.parent {
                assert!(
                    cats.iter().any(|t| t.id == p && t.parent.is_none()),
                    "{} has no tier-1 parent {p}",
                    c.name
                );
            }
            assert!(!c.description.is_empty());
        }
        assert!(cats.iter().filter(|c| c.tier() == 1).count() >= 35);
    }

    #[test]
    fn scores_stay_in_range() {
        assert_eq!(score(-1.0), 0.0);
        assert_eq!(score(1.0), 1.0);
        assert_eq!(score(f32::NAN), 0.0);
        let mid = score((COS_UNRELATED + COS_ON_TOPIC) / 2.0);
        assert!((mid - 0.5).abs() < 1e-6);
    }

    #[test]
    fn long_texts_are_cut_into_a_bounded_number_of_chunks() {
        assert!(chunks("  ").is_empty());
        let long = "word ".repeat(CHUNK_WORDS * (MAX_CHUNKS + 10));
        assert_eq!(chunks(&long).len(), MAX_CHUNKS);
        assert_eq!(chunks("a b c").len(), 1);
    }
}
