//! What the analysis means, in words: [`findings`] turns the scorers' numbers into ranked
//! findings ([`finding`]'s types) with their [`summaries`] and [`cures`]; [`format`] writes
//! numbers for people, one way everywhere.

pub mod cures;
pub mod finding;
pub mod findings;
pub mod format;
pub mod summaries;
