// MQTT.js over wss for the Go tests (internal/app/edge_test.go): one
// scenario per run, given as a JSON argument; what happened is printed as
// JSON lines on stdout. The run ends by itself (timeoutMs).
'use strict'
const fs = require('fs')
const mqtt = require('mqtt')

const a = JSON.parse(process.argv[2])
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')
const done = (o, code) => {
  out(o)
  process.exit(code || 0)
}
setTimeout(() => done({ error: 'timed out' }, 1), a.timeoutMs || 15000)

const client = mqtt.connect(a.url, {
  protocolVersion: a.version,
  clientId: a.clientId,
  username: a.username,
  password: a.password,
  ca: fs.readFileSync(a.ca),
  rejectUnauthorized: true,
  reconnectPeriod: 0,
  connectTimeout: 5000,
  keepalive: 30,
  clean: true,
})

client.on('error', (err) => {
  if (a.scenario === 'badpass') done({ code: err.code, message: err.message })
  done({ error: err.message, code: err.code }, 1)
})

client.on('connect', (ack) => {
  if (a.scenario === 'badpass') done({ error: 'connected with a wrong password' }, 1)
  client.subscribe(a.topic, { qos: 1 }, (err, granted) => {
    if (err) done({ error: 'subscribe: ' + err.message }, 1)
    if (a.scenario === 'revoke') {
      out({ ready: true, granted: granted.map((g) => g.qos) })
      return
    }
    client.publish(a.topic, a.payload, { qos: 1 })
  })
})

client.on('message', (topic, payload) => {
  client.end(false, () => done({ topic, payload: payload.toString() }))
})

client.on('disconnect', (packet) => {
  done({ disconnect: packet.reasonCode })
})

client.on('close', () => {
  // A close without a DISCONNECT (3.x revocation, or the end of a run).
  setTimeout(() => done({ closed: true }), 200)
})
