// The part of the WebAssembly JS API Weir uses (Node has it; @types/node 20 does not declare it).
declare namespace WebAssembly {
  class Module {
    constructor(bytes: ArrayBufferView | ArrayBuffer);
  }
  class Instance {
    constructor(module: Module, imports?: Record<string, Record<string, unknown>>);
    readonly exports: Record<string, unknown>;
  }
  class Memory {
    readonly buffer: ArrayBuffer;
    grow(pages: number): number;
  }
  /** Compiles in the background (off the calling thread). */
  function compile(bytes: ArrayBufferView | ArrayBuffer): Promise<Module>;
}
