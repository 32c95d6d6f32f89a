//! The guard proxy every browser request goes through (being written).
