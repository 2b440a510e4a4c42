//! Upload bytes in an S3-compatible bucket (issue 16). So far: the client
//! the byte store will speak through, tested against a real Garage.

pub mod client;

#[cfg(test)]
mod tests;
