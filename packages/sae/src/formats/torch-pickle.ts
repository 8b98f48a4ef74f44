import { bf16ToF32, f16ToF32 } from '@relp/weights';
import { unzipSync } from 'fflate';
import { badSaeFile, unsupportedSae } from './common.js';

/**
 * A reader for PyTorch checkpoints (`torch.save` zip files) that holds a state dict: the zip's `data.pkl` is run by
 * a restricted unpickler that knows only the opcodes and globals a state dict needs (OrderedDict, the tensor
 * rebuild functions, the typed storages), so a checkpoint can never run code; anything else is BAD_MODEL_FILE.
 */

/** A tensor read from a checkpoint: its shape, dtype and values in row-major order. */
export interface TorchTensor {
  readonly shape: readonly number[];
  readonly dtype: TorchDtype;
  /** float32 for floating dtypes (float16 and bfloat16 converted exactly), else int values as numbers. */
  readonly data: Float32Array | Float64Array;
}

export type TorchDtype =
  | 'float32'
  | 'float16'
  | 'bfloat16'
  | 'float64'
  | 'int32'
  | 'int64'
  | 'int16'
  | 'int8'
  | 'uint8'
  | 'bool';

const STORAGES: Readonly<Record<string, { dtype: TorchDtype; size: number }>> = {
  FloatStorage: { dtype: 'float32', size: 4 },
  HalfStorage: { dtype: 'float16', size: 2 },
  BFloat16Storage: { dtype: 'bfloat16', size: 2 },
  DoubleStorage: { dtype: 'float64', size: 8 },
  IntStorage: { dtype: 'int32', size: 4 },
  LongStorage: { dtype: 'int64', size: 8 },
  ShortStorage: { dtype: 'int16', size: 2 },
  CharStorage: { dtype: 'int8', size: 1 },
  ByteStorage: { dtype: 'uint8', size: 1 },
  BoolStorage: { dtype: 'bool', size: 1 },
};

const ALLOWED_GLOBALS = new Set([
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
  ...Object.keys(STORAGES).map((s) => `torch.${s}`),
]);

// ---- pickle values
class Tuple {
  constructor(readonly items: Value[]) {}
}
class List {
  constructor(readonly items: Value[]) {}
}
class Dict {
  readonly map = new Map<string | number | boolean | null, Value>();
}
class Global {
  constructor(readonly path: string) {}
}
class StorageRef {
  constructor(
    readonly dtype: TorchDtype,
    readonly size: number,
    readonly key: string,
    readonly numel: number,
  ) {}
}
class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}
type Value =
  | null
  | boolean
  | number
  | string
  | Uint8Array
  | Tuple
  | List
  | Dict
  | Global
  | StorageRef
  | TensorRef;
const MARK = Symbol('mark');

/** Runs a state-dict pickle; returns the OrderedDict of tensor references. */
function unpickle(bytes: Uint8Array, source: string): Dict {
  const fail = (msg: string, at: number) =>
    badSaeFile(`${source}: data.pkl: ${msg} (byte ${at})`, { offset: at });
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stack: (Value | typeof MARK)[] = [];
  const memo = new Map<number, Value>();
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  let pos = 0;
  const need = (n: number, at: number) => {
    if (n < 0 || pos + n > bytes.length) throw fail('truncated', at);
  };
  const u8 = (at: number) => {
    need(1, at);
    return bytes[pos++]!;
  };
  const take = (n: number, at: number) => {
    need(n, at);
    const out = bytes.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  const line = (at: number) => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) throw fail('unterminated line', at);
    const s = new TextDecoder('latin1').decode(bytes.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const pop = (at: number): Value => {
    const v = stack.pop();
    if (v === undefined || v === MARK) throw fail('stack underflow', at);
    return v;
  };
  const popMark = (at: number): Value[] => {
    const i = stack.lastIndexOf(MARK);
    if (i < 0) throw fail('no MARK', at);
    const items = stack.splice(i) as (Value | typeof MARK)[];
    items.shift();
    return items as Value[];
  };
  const top = (at: number): Value => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) throw fail('stack underflow', at);
    return v;
  };
  const str = (b: Uint8Array, at: number) => {
    try {
      return utf8.decode(b);
    } catch {
      throw fail('string is not UTF-8', at);
    }
  };
  const dictKey = (k: Value, at: number): string | number | boolean | null => {
    if (k === null || typeof k === 'string' || typeof k === 'number' || typeof k === 'boolean') return k;
    throw fail('unsupported dict key', at);
  };
  const setItems = (d: Value, kv: Value[], at: number) => {
    if (!(d instanceof Dict)) throw fail('SETITEM on a non-dict', at);
    if (kv.length % 2 !== 0) throw fail('odd number of dict items', at);
    for (let i = 0; i < kv.length; i += 2) d.map.set(dictKey(kv[i]!, at), kv[i + 1]!);
  };
  const int = (v: Value, what: string, at: number): number => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw fail(`${what} is not an integer`, at);
    return v;
  };
  const ints = (v: Value, what: string, at: number): number[] => {
    if (!(v instanceof Tuple)) throw fail(`${what} is not a tuple`, at);
    return v.items.map((x) => int(x, what, at));
  };
  const reduce = (fn: Value, args: Value, at: number): Value => {
    if (!(fn instanceof Global) || !(args instanceof Tuple))
      throw fail('REDUCE needs a global and a tuple', at);
    const a = args.items;
    switch (fn.path) {
      case 'collections.OrderedDict':
        if (a.length !== 0) throw fail('OrderedDict with arguments', at);
        return new Dict();
      case 'torch._utils._rebuild_tensor_v2': {
        if (a.length < 6 || a.length > 7) throw fail('_rebuild_tensor_v2 takes 6 or 7 arguments', at);
        const storage = a[0];
        if (!(storage instanceof StorageRef)) throw fail('tensor without a storage', at);
        return new TensorRef(
          storage,
          int(a[1]!, 'storage offset', at),
          ints(a[2]!, 'size', at),
          ints(a[3]!, 'stride', at),
        );
      }
      case 'torch._utils._rebuild_parameter': {
        if (a.length < 1 || !(a[0] instanceof TensorRef))
          throw fail('_rebuild_parameter without a tensor', at);
        return a[0];
      }
      default:
        throw fail(`${fn.path} cannot be called here`, at);
    }
  };
  const global = (path: string, at: number): Global => {
    if (!ALLOWED_GLOBALS.has(path)) throw fail(`global ${path} is not allowed in a state dict`, at);
    return new Global(path);
  };

  for (;;) {
    const at = pos;
    const op = u8(at);
    switch (op) {
      case 0x80: // PROTO
        if (u8(at) > 5) throw fail('pickle protocol above 5', at);
        break;
      case 0x95: // FRAME
        take(8, at);
        break;
      case 0x63: {
        // GLOBAL
        const mod = line(at);
        const name = line(at);
        stack.push(global(`${mod}.${name}`, at));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop(at);
        const mod = pop(at);
        if (typeof mod !== 'string' || typeof name !== 'string') throw fail('STACK_GLOBAL needs strings', at);
        stack.push(global(`${mod}.${name}`, at));
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(at), top(at));
        break;
      case 0x72: // LONG_BINPUT
        need(4, at);
        memo.set(view.getUint32(pos, true), top(at));
        pos += 4;
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top(at));
        break;
      case 0x68: {
        // BINGET
        const k = u8(at);
        if (!memo.has(k)) throw fail(`memo ${k} is empty`, at);
        stack.push(memo.get(k)!);
        break;
      }
      case 0x6a: {
        // LONG_BINGET
        need(4, at);
        const k = view.getUint32(pos, true);
        pos += 4;
        if (!memo.has(k)) throw fail(`memo ${k} is empty`, at);
        stack.push(memo.get(k)!);
        break;
      }
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(new Tuple([]));
        break;
      case 0x74: // TUPLE
        stack.push(new Tuple(popMark(at)));
        break;
      case 0x85:
      case 0x86:
      case 0x87: {
        // TUPLE1..3
        const n = op - 0x84;
        const items: Value[] = [];
        for (let i = 0; i < n; i++) items.unshift(pop(at));
        stack.push(new Tuple(items));
        break;
      }
      case 0x7d: // EMPTY_DICT
        stack.push(new Dict());
        break;
      case 0x5d: // EMPTY_LIST
        stack.push(new List([]));
        break;
      case 0x61: {
        // APPEND
        const v = pop(at);
        const l = top(at);
        if (!(l instanceof List)) throw fail('APPEND to a non-list', at);
        l.items.push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const vs = popMark(at);
        const l = top(at);
        if (!(l instanceof List)) throw fail('APPENDS to a non-list', at);
        l.items.push(...vs);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop(at);
        const k = pop(at);
        setItems(top(at), [k, v], at);
        break;
      }
      case 0x75: {
        // SETITEMS
        const kv = popMark(at);
        setItems(top(at), kv, at);
        break;
      }
      case 0x58: {
        // BINUNICODE
        need(4, at);
        const n = view.getUint32(pos, true);
        pos += 4;
        stack.push(str(take(n, at), at));
        break;
      }
      case 0x8c: // SHORT_BINUNICODE
        stack.push(str(take(u8(at), at), at));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(new TextDecoder('latin1').decode(take(u8(at), at)));
        break;
      case 0x54: {
        // BINSTRING
        need(4, at);
        const n = view.getInt32(pos, true);
        pos += 4;
        stack.push(new TextDecoder('latin1').decode(take(n, at)));
        break;
      }
      case 0x43: // SHORT_BINBYTES
        stack.push(take(u8(at), at).slice());
        break;
      case 0x42: {
        // BINBYTES
        need(4, at);
        const n = view.getUint32(pos, true);
        pos += 4;
        stack.push(take(n, at).slice());
        break;
      }
      case 0x4a: // BININT
        need(4, at);
        stack.push(view.getInt32(pos, true));
        pos += 4;
        break;
      case 0x4b: // BININT1
        stack.push(u8(at));
        break;
      case 0x4d: // BININT2
        need(2, at);
        stack.push(view.getUint16(pos, true));
        pos += 2;
        break;
      case 0x8a: {
        // LONG1
        const n = u8(at);
        const b = take(n, at);
        if (n > 7) throw fail('integer too large', at);
        let v = 0;
        for (let i = n - 1; i >= 0; i--) v = v * 256 + b[i]!;
        if (n > 0 && b[n - 1]! >= 0x80) v -= 2 ** (8 * n);
        stack.push(v);
        break;
      }
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x47: // BINFLOAT
        need(8, at);
        stack.push(view.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x30: // POP
        pop(at);
        break;
      case 0x52: {
        // REDUCE
        const args = pop(at);
        const fn = pop(at);
        stack.push(reduce(fn, args, at));
        break;
      }
      case 0x62: {
        // BUILD: only the state dict's `_metadata` attribute on the OrderedDict, which is dropped
        const state = pop(at);
        const obj = top(at);
        if (!(obj instanceof Dict) || !(state instanceof Dict || state === null))
          throw fail('unsupported BUILD', at);
        break;
      }
      case 0x51: {
        // BINPERSID: ('storage', torch.<T>Storage, key, location, numel)
        const pid = pop(at);
        if (!(pid instanceof Tuple) || pid.items.length !== 5 || pid.items[0] !== 'storage')
          throw fail('persistent id is not a storage', at);
        const [, cls, key, , numel] = pid.items;
        if (!(cls instanceof Global)) throw fail('storage type is not a global', at);
        const st = STORAGES[cls.path.slice('torch.'.length)];
        if (!st || !cls.path.startsWith('torch.')) throw fail(`unknown storage ${cls.path}`, at);
        if (typeof key !== 'string') throw fail('storage key is not a string', at);
        const n = int(numel ?? null, 'storage size', at);
        if (n < 0) throw fail('negative storage size', at);
        stack.push(new StorageRef(st.dtype, st.size, key, n));
        break;
      }
      case 0x2e: {
        // STOP
        const out = pop(at);
        if (!(out instanceof Dict)) throw fail('the pickle is not a dict (a state dict)', at);
        return out;
      }
      default:
        throw fail(`opcode 0x${op.toString(16).padStart(2, '0')} is not allowed in a state dict`, at);
    }
  }
}

/** The hard ceiling of bytes one checkpoint may inflate and materialise, whatever a caller allows. */
export const MAX_TORCH_BYTES = 2 ** 31;
/** A state dict's pickle holds names and tensor geometry: kilobytes to a few megabytes. */
const MAX_PICKLE_BYTES = 64 * 2 ** 20;
/** More zip entries than any state dict has (one per storage, plus a few). */
const MAX_ZIP_ENTRIES = 100_000;

export interface TorchReadOptions {
  /**
   * The tensors to read, by name, with the shape each must have. Only these are inflated and materialised (others
   * are skipped after their geometry checks); a wanted tensor of another shape is BAD_MODEL_FILE before any of
   * its storage is inflated. Absent: every tensor is read.
   */
  readonly want?: Readonly<Record<string, readonly number[]>>;
  /**
   * The most bytes inflated (the storages read) plus materialised (the tensors returned), in all; at most, and by
   * default, MAX_TORCH_BYTES.
   */
  readonly maxBytes?: number;
}

/** One tensor's geometry checked against its storage; `numel` is bounded by the byte budget. */
interface PlannedTensor {
  readonly name: string;
  readonly ref: TensorRef;
  readonly numel: number;
}

/** The product of sizes, or undefined past 2^53. */
function safeProduct(xs: readonly number[]): number | undefined {
  let p = 1;
  for (const x of xs) {
    if (x === 0) return 0;
    p *= x;
    if (p > Number.MAX_SAFE_INTEGER) return undefined;
  }
  return p;
}

/**
 * Reads the tensors of a `torch.save`d state dict (zip format, PyTorch ≥ 1.6). Storage offsets and strides are
 * honoured; float16 and bfloat16 become float32 exactly. Hostile files cost little: only the pickle and the
 * storages of the tensors read are inflated, each only after its declared size matched what the pickle says it
 * holds, every view must lie inside its storage, and the bytes inflated and materialised are bounded
 * (`options.maxBytes`, and wanted shapes) before any of it is allocated. Throws BAD_MODEL_FILE for anything that
 * is not a plain little-endian state dict of tensors (or exceeds those bounds), UNSUPPORTED for big-endian files.
 */
export function readTorchStateDict(
  bytes: Uint8Array,
  source = 'checkpoint',
  options: TorchReadOptions = {},
): Map<string, TorchTensor> {
  const budget = Math.min(options.maxBytes ?? MAX_TORCH_BYTES, MAX_TORCH_BYTES);
  const entries = new Map<string, { originalSize: number; compression: number }>();
  const isPickle = (n: string) => n === 'data.pkl' || n.endsWith('/data.pkl');
  let head: Record<string, Uint8Array>;
  try {
    // First pass: every entry's name and declared size; only the pickle and byteorder are inflated.
    head = unzipSync(bytes, {
      filter: (f) => {
        if (entries.size >= MAX_ZIP_ENTRIES) throw new Error(`more than ${MAX_ZIP_ENTRIES} entries`);
        entries.set(f.name, { originalSize: f.originalSize, compression: f.compression });
        const keep = isPickle(f.name) || f.name === 'byteorder' || f.name.endsWith('/byteorder');
        if (keep && f.originalSize > MAX_PICKLE_BYTES)
          throw new Error(`entry ${f.name} claims ${f.originalSize} bytes`);
        return keep;
      },
    });
  } catch (e) {
    throw badSaeFile(`${source} is not a PyTorch zip checkpoint (${(e as Error).message})`);
  }
  const pkl = [...entries.keys()].filter(isPickle);
  if (pkl.length !== 1) {
    throw badSaeFile(
      `${source}: expected one data.pkl in the zip, found ${pkl.length} (legacy non-zip torch.save files are not supported)`,
    );
  }
  const prefix = pkl[0]!.slice(0, -'data.pkl'.length);
  const order = head[`${prefix}byteorder`];
  if (order && new TextDecoder().decode(order).trim() !== 'little') {
    throw unsupportedSae(`${source}: big-endian checkpoints are not supported`);
  }
  const pickle = head[pkl[0]!];
  if (pickle === undefined) throw badSaeFile(`${source}: ${pkl[0]} cannot be read`);
  const dict = unpickle(pickle, source);

  // Plan: check every tensor's geometry and the byte budget before inflating or allocating anything.
  const planned: PlannedTensor[] = [];
  const storages = new Map<string, StorageRef>();
  let spend = 0;
  const charge = (n: number, where: string) => {
    spend += n;
    if (spend > budget) {
      throw badSaeFile(
        `${where}: the checkpoint needs more than ${budget} bytes (inflated storages and tensors) to read`,
        { maxBytes: budget },
      );
    }
  };
  for (const [name, v] of dict.map) {
    if (typeof name !== 'string') throw badSaeFile(`${source}: a state dict key is not a string`);
    if (!(v instanceof TensorRef)) throw badSaeFile(`${source}: "${name}" is not a tensor`);
    const where = `${source}: "${name}"`;
    const numel = checkView(v, where);
    const wanted = options.want?.[name];
    if (options.want !== undefined && wanted === undefined) continue;
    if (
      wanted !== undefined &&
      (wanted.length !== v.shape.length || wanted.some((d, i) => d !== v.shape[i]))
    ) {
      throw badSaeFile(`${where} has shape [${v.shape}], expected [${wanted}]`, {
        tensor: name,
        shape: [...v.shape],
        expected: [...wanted],
      });
    }
    const st = v.storage;
    const known = storages.get(st.key);
    if (known === undefined) {
      charge(st.numel * st.size, where);
      storages.set(st.key, st);
    } else if (known.numel !== st.numel || known.dtype !== st.dtype) {
      throw badSaeFile(`${where}: storage data/${st.key} is declared twice, differently`);
    }
    const floating = st.dtype.startsWith('float') || st.dtype === 'bfloat16';
    charge(numel * (floating ? 4 : 8), where);
    planned.push({ name, ref: v, numel });
  }
  for (const [key, st] of storages) {
    const entry = entries.get(`${prefix}data/${key}`);
    if (entry === undefined) throw badSaeFile(`${source}: storage data/${key} is missing`);
    if (entry.originalSize !== st.numel * st.size) {
      throw badSaeFile(
        `${source}: storage data/${key} has ${entry.originalSize} bytes, expected ${st.numel * st.size}`,
      );
    }
  }

  // Second pass: inflate the storages the planned tensors read, and nothing else.
  let raw: Record<string, Uint8Array>;
  try {
    raw = unzipSync(bytes, {
      filter: (f) =>
        f.name.startsWith(`${prefix}data/`) && storages.has(f.name.slice(`${prefix}data/`.length)),
    });
  } catch (e) {
    throw badSaeFile(`${source}: a storage cannot be inflated (${(e as Error).message})`);
  }
  const out = new Map<string, TorchTensor>();
  for (const t of planned)
    out.set(
      t.name,
      materialise(t.ref, t.numel, raw[`${prefix}data/${t.ref.storage.key}`], `${source}: "${t.name}"`),
    );
  return out;
}

/**
 * Checks a view's geometry (sizes, strides and offset non-negative, its furthest element inside the storage, its
 * element count representable) and returns its element count.
 */
function checkView(t: TensorRef, where: string): number {
  const { shape, stride, offset, storage: st } = t;
  if (shape.length !== stride.length) throw badSaeFile(`${where}: size and stride differ in length`);
  if (shape.some((s) => s < 0) || stride.some((s) => s < 0) || offset < 0)
    throw badSaeFile(`${where}: negative size, stride or offset`);
  if (st.numel * st.size > Number.MAX_SAFE_INTEGER) throw badSaeFile(`${where}: storage size out of range`);
  const numel = safeProduct(shape);
  if (numel === undefined) throw badSaeFile(`${where}: [${shape}] has more elements than can be counted`);
  // A state dict's tensors are views of their own storage; one with more elements than its storage (zero or
  // overlapping strides) would let a few bytes declare gigabytes.
  if (numel > st.numel) {
    throw badSaeFile(
      `${where}: the view [${shape}] has ${numel} elements but its storage only ${st.numel} (zero or overlapping strides)`,
    );
  }
  if (numel > 0) {
    let last = offset;
    for (let i = 0; i < shape.length; i++) {
      last += (shape[i]! - 1) * stride[i]!;
      if (!(last < st.numel)) {
        throw badSaeFile(
          `${where}: the view (size [${shape}], stride [${stride}], offset ${offset}) reaches past its ${st.numel}-element storage`,
        );
      }
    }
    if (!(last < st.numel))
      throw badSaeFile(`${where}: view reaches element ${last} of a ${st.numel}-element storage`);
  }
  return numel;
}

function materialise(t: TensorRef, numel: number, raw: Uint8Array | undefined, where: string): TorchTensor {
  const st = t.storage;
  if (!raw) throw badSaeFile(`${where}: storage data/${st.key} is missing`);
  if (raw.length !== st.numel * st.size)
    throw badSaeFile(
      `${where}: storage data/${st.key} has ${raw.length} bytes, expected ${st.numel * st.size}`,
    );
  const { shape, stride, offset } = t;
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const read = (i: number): number => {
    const b = i * st.size;
    switch (st.dtype) {
      case 'float32':
        return view.getFloat32(b, true);
      case 'float16':
        return f16ToF32(view.getUint16(b, true));
      case 'bfloat16':
        return bf16ToF32(view.getUint16(b, true));
      case 'float64':
        return view.getFloat64(b, true);
      case 'int32':
        return view.getInt32(b, true);
      case 'int64':
        return Number(view.getBigInt64(b, true));
      case 'int16':
        return view.getInt16(b, true);
      case 'int8':
        return view.getInt8(b);
      case 'uint8':
      case 'bool':
        return view.getUint8(b);
    }
  };
  const floating = st.dtype.startsWith('float') || st.dtype === 'bfloat16';
  const data = floating ? new Float32Array(numel) : new Float64Array(numel);
  const idx = new Array<number>(shape.length).fill(0);
  for (let n = 0; n < numel; n++) {
    let at = offset;
    for (let d = 0; d < shape.length; d++) at += idx[d]! * stride[d]!;
    data[n] = read(at);
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d]! < shape[d]!) break;
      idx[d] = 0;
    }
  }
  return { shape, dtype: st.dtype, data };
}
