//! The node agent: owns the datapath and the IPAM store, serves the local socket.
