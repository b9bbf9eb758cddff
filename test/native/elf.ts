/**
 * Just enough of an ELF reader to check what the build made, without `file` or binutils:
 * the machine, whether it needs a dynamic loader, and which sections it carries.
 * ELF64 little-endian only (x86-64 and AArch64). Layout: the System V ABI's ELF header,
 * program headers (p_type at 0) and section headers (sh_name at 0, sh_type at 4, sh_offset at 24).
 */
import { readFileSync } from 'node:fs';

export const EM_X86_64 = 62;
export const EM_AARCH64 = 183;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const SHT_SYMTAB = 2;

export interface ElfFacts {
  /** e_machine: EM_X86_64, EM_AARCH64, … */
  machine: number;
  /** A PT_INTERP program header: the kernel starts a dynamic loader first. */
  interpreter: boolean;
  /** A PT_DYNAMIC program header: dynamic linking (also static-pie). */
  dynamic: boolean;
  /** Section names, in order. */
  sections: string[];
  /** A SHT_SYMTAB section (what `strip` removes). */
  symbolTable: boolean;
}

export function readElf(path: string): ElfFacts {
  const b = readFileSync(path);
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${path}: not an ELF file`);
  if (b[4] !== 2 || b[5] !== 1) throw new Error(`${path}: not ELF64 little-endian`);
  const machine = b.readUInt16LE(18);
  const phoff = Number(b.readBigUInt64LE(32));
  const shoff = Number(b.readBigUInt64LE(40));
  const phentsize = b.readUInt16LE(54);
  const phnum = b.readUInt16LE(56);
  const shentsize = b.readUInt16LE(58);
  const shnum = b.readUInt16LE(60);
  const shstrndx = b.readUInt16LE(62);
  const types = Array.from({ length: phnum }, (_, i) => b.readUInt32LE(phoff + i * phentsize));
  const section = (i: number) => ({
    name: b.readUInt32LE(shoff + i * shentsize),
    type: b.readUInt32LE(shoff + i * shentsize + 4),
    offset: Number(b.readBigUInt64LE(shoff + i * shentsize + 24)),
  });
  const strings = shnum > 0 ? section(shstrndx).offset : 0;
  const headers = Array.from({ length: shnum }, (_, i) => section(i));
  const nameAt = (at: number) => b.toString('latin1', strings + at, b.indexOf(0, strings + at));
  return {
    machine,
    interpreter: types.includes(PT_INTERP),
    dynamic: types.includes(PT_DYNAMIC),
    sections: headers.map((h) => nameAt(h.name)),
    symbolTable: headers.some((h) => h.type === SHT_SYMTAB),
  };
}
