// Driven by test-xapi-xo-transport.sh: Xen Orchestra's transports
// (npm xen-api, transports/*.mjs) against vdimotiond.
//   node xapi-xo-transport.mjs NODE_MODULES URL
// Each transport (json-rpc: POST /jsonrpc; xml-rpc: POST /xmlrpc, parsed
// by XO's XML parser, which refuses blanks between tags; auto: JSON-RPC
// unless the reply's Content-Type is not exactly application/json) logs
// in, reads the SRs' records, creates and reads a VDI (an int64 field, a
// datetime) and gets SESSION_INVALID as a XapiError.
import assert from 'node:assert/strict'
import path from 'node:path'

const [modules, url] = process.argv.slice(2)
const load = async file => (await import(path.join(modules, 'xen-api', file))).default
const parseUrl = await load('_parseUrl.mjs')
const transports = {
  'json-rpc': await load('transports/json-rpc.mjs'),
  'xml-rpc': await load('transports/xml-rpc.mjs'),
  auto: await load('transports/auto.mjs'),
}

let checks = 0
for (const [name, factory] of Object.entries(transports)) {
  const call = factory({ url: parseUrl(url) })
  const s = await call('session.login_with_password', ['root', 'secret'])
  assert.match(s, /^OpaqueRef:/)
  const srs = await call('SR.get_all_records', [s])
  const [sr] = Object.keys(srs).filter(r => srs[r].name_label === 'sr1')
  assert.ok(sr, name + ': no sr1 in ' + JSON.stringify(srs))
  // XO's XML-RPC transport sends ints as strings (prepareXmlRpcParams)
  const vdi = await call('VDI.create', [
    s,
    { SR: sr, name_label: 'xo-' + name, name_description: '', virtual_size: 1048576, type: 'user', sharable: false, read_only: false, other_config: {} },
  ])
  const rec = await call('VDI.get_record', [s, vdi])
  // int64: a number in JSON, a string in XML-RPC (as xapi sends them)
  assert.equal(String(rec.virtual_size), '1048576', name)
  assert.equal(typeof rec.virtual_size, name === 'xml-rpc' ? 'string' : 'number', name)
  assert.equal(rec.name_description, '', name + ': "" must stay a key')
  assert.equal(rec.read_only, false, name)
  // a datetime: xapi's string in JSON; XO's XML parser makes it a Date,
  // in UTC thanks to the Z (the test runs in TZ=CET-1, where a time
  // without Z would be read an hour off)
  if (name === 'xml-rpc') {
    assert.ok(rec.snapshot_time instanceof Date, name)
    assert.equal(rec.snapshot_time.getTime(), 0, name + ': a new VDI has never been snapshot')
  } else assert.equal(rec.snapshot_time, '19700101T00:00:00Z', name)
  await assert.rejects(call('SR.get_all', ['OpaqueRef:nope']), error => {
    assert.equal(error.code, 'SESSION_INVALID', name)
    assert.deepEqual(error.params, ['OpaqueRef:nope'], name)
    return true
  })
  await call('VDI.destroy', [s, vdi])
  await call('session.logout', [s])
  checks++
  console.log('ok: ' + name)
}
console.log(`xapi-xo-transport: ${checks} transports passed`)
