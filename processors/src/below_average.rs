//! Below average: edge-triggered events when a price crosses below its historical average.
