// Types for the part of syscall-napi (raw Linux syscalls from Node, used for setns) the engine uses.
declare module 'syscall-napi' {
  interface Syscall {
    (...args: (bigint | Buffer)[]): Promise<bigint>;
    sync(...args: (bigint | Buffer)[]): bigint;
  }
  const sys: { syscall: Syscall; __NR_setns: bigint } & Record<string, unknown>;
  export default sys;
}
