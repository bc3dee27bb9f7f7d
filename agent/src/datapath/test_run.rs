//! `BPF_PROG_TEST_RUN` of the tc programs on crafted frames, against the real pinned maps: for
//! the packet tests, the benchmarks and self-checks.

use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use dataplane_common::maps::{PROG_FROM_POD, PROG_NETDEV_LB, PROG_TO_POD};

use super::{as_classifier, Datapath, DatapathError};

/// Verdict and output of a `BPF_PROG_TEST_RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRunOutput {
    /// The program's return value (a `TC_ACT_*` verdict).
    pub verdict: u32,
    /// The packet as the program left it.
    pub frame: Vec<u8>,
    /// Mean run time per repetition as the kernel measured it, nanoseconds.
    pub duration_ns: u32,
}

impl Datapath {
    /// Run `from_pod` once on `frame`. Under test_run a redirect is reported as the
    /// program's verdict and not performed.
    pub fn test_run_from_pod(&self, frame: &[u8]) -> Result<TestRunOutput, DatapathError> {
        self.test_run(PROG_FROM_POD, frame, 1)
    }

    /// Run `to_pod` (what the node's stack delivers into a pod) once.
    pub fn test_run_to_pod(&self, frame: &[u8]) -> Result<TestRunOutput, DatapathError> {
        self.test_run(PROG_TO_POD, frame, 1)
    }

    /// Run `netdev_lb` (the uplink's Service path: `lb::netdev` + local delivery) once.
    pub fn test_run_netdev(&self, frame: &[u8]) -> Result<TestRunOutput, DatapathError> {
        self.test_run(PROG_NETDEV_LB, frame, 1)
    }

    /// Run tc program `program` (`from_pod`, `to_pod` or `netdev_lb`) `repeat` times on `frame`; the
    /// output is the last run's, the duration the mean.
    pub fn test_run(
        &self,
        program: &'static str,
        frame: &[u8],
        repeat: u32,
    ) -> Result<TestRunOutput, DatapathError> {
        let prog: &SchedClassifier = as_classifier(self.ebpf.program(program), program)?;
        // Room for the frame plus what a program may add (a refusal grows a short frame).
        let mut out = vec![0u8; frame.len() + 256];
        let result = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat,
                ..TestRunOptions::default()
            })
            .map_err(|source| DatapathError::Program {
                name: program,
                source,
            })?;
        out.truncate(result.data_size_out as usize);
        Ok(TestRunOutput {
            verdict: result.return_value,
            frame: out,
            duration_ns: result.duration.as_nanos() as u32,
        })
    }
}
