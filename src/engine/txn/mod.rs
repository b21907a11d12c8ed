//! RFC 3261 section 17 transactions (placeholder until the txn work lands).
