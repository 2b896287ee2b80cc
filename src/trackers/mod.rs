//! Incident trackers (being written).
