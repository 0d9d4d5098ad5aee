// Loaded by mocha (.mocharc.json "require") before any test file: the agents the tests run, in this
// process and as child processes (they inherit the environment), log at warn, so a test run prints
// its results rather than thousands of info lines. TANDEM_TEST_LOG=info (or debug...) brings them
// back; an explicit TANDEM_LOG_LEVEL is kept. Tests that read info lines set the level themselves.
'use strict';
process.env.TANDEM_LOG_LEVEL = process.env.TANDEM_TEST_LOG ?? process.env.TANDEM_LOG_LEVEL ?? 'warn';
