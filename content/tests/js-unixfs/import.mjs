// The npm UnixFS importer as an independent peer for shoal-content's tests and benchmark.
//
//   node import.mjs [--blocks DIR] PROFILE PATH...
//
// Imports each PATH (a file, or a directory tree) with `ipfs-unixfs-importer` and prints one
// JSON line per path:
//   {"path": ..., "cid": ..., "ms": <import time in milliseconds>}
// PROFILE is kubo-v1 (what `ipfs add --cid-version=1` does), unixfs-v0-2015 or unixfs-v1-2025.
// With --blocks DIR, the blocks are kept in a `blockstore-core` MemoryBlockstore and those of each
// DAG written to DIR, one file per block named by its CID, found by walking the DAG from its root.
import fs from 'node:fs'
import path from 'node:path'
import * as dagPb from '@ipld/dag-pb'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'

const PROFILES = {
  'kubo-v1': () => ({
    cidVersion: 1,
    rawLeaves: true,
    chunker: fixedSize({ chunkSize: 262144 }),
    layout: balanced({ maxChildrenPerNode: 174 }),
    shardSplitStrategy: 'links-bytes'
  }),
  'unixfs-v0-2015': () => ({ profile: 'unixfs-v0-2015' }),
  'unixfs-v1-2025': () => ({ profile: 'unixfs-v1-2025' })
}

function fileContent (file) {
  // Opened only when the importer reaches the file, so large trees do not exhaust descriptors.
  // Small files are read whole: a 1 MiB stream buffer per file made 10,000-file trees slow.
  return (async function * () {
    if (fs.statSync(file).size < 1 << 20) yield await fs.promises.readFile(file)
    else yield * fs.createReadStream(file, { highWaterMark: 1 << 20 })
  })()
}

// Candidates for a tree, as `ipfs add -r` sees it: every directory (so empty ones are kept),
// every file, every symlink (preserved, not followed); hidden entries skipped.
function * walk (dir, prefix) {
  yield { path: prefix }
  for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name < b.name ? -1 : 1)) {
    if (entry.name.startsWith('.')) continue
    const full = path.join(dir, entry.name)
    const rel = `${prefix}/${entry.name}`
    if (entry.isSymbolicLink()) yield { path: rel, link: fs.readlinkSync(full) }
    else if (entry.isDirectory()) yield * walk(full, rel)
    else yield { path: rel, content: fileContent(full) }
  }
}

async function dumpBlocks (blockstore, root, dir) {
  const seen = new Set()
  const pending = [root]
  while (pending.length > 0) {
    const cid = pending.pop()
    const key = cid.toString()
    if (seen.has(key)) continue
    seen.add(key)
    const chunks = []
    for await (const chunk of blockstore.get(cid)) chunks.push(chunk)
    const bytes = Buffer.concat(chunks)
    fs.writeFileSync(path.join(dir, key), bytes)
    if (cid.code === dagPb.code) {
      for (const link of dagPb.decode(bytes).Links) pending.push(link.Hash)
    }
  }
}

async function main () {
  const args = process.argv.slice(2)
  let blocksDir
  if (args[0] === '--blocks') {
    blocksDir = args[1]
    args.splice(0, 2)
  }
  const [profile, ...paths] = args
  if (PROFILES[profile] == null || paths.length === 0) {
    console.error('usage: node import.mjs [--blocks DIR] kubo-v1|unixfs-v0-2015|unixfs-v1-2025 PATH...')
    process.exit(2)
  }
  for (const p of paths) {
    // Without --blocks only the root CID matters: a store that drops blocks keeps a 200 MiB
    // import from holding 200 MiB (the importer only ever calls `put`).
    const blockstore = blocksDir != null ? new MemoryBlockstore() : { put: async (cid) => cid }
    const isDir = fs.statSync(p).isDirectory()
    const source = isDir ? walk(p, path.basename(p)) : [{ content: fileContent(p) }]
    const started = process.hrtime.bigint()
    let root
    for await (const entry of importer(source, blockstore, PROFILES[profile]())) root = entry
    const ms = Number(process.hrtime.bigint() - started) / 1e6
    if (blocksDir != null) await dumpBlocks(blockstore, root.cid, blocksDir)
    console.log(JSON.stringify({ path: p, cid: root.cid.toString(), ms }))
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
