'use strict';
// A packet gateway built on the npm `diameter` package (node-diameter), not on our code: it sends
// CER, then each credit-control request given as JSON in argv[4] (an array of
// {"label", "type", "number", "realm"?, "asked"?, "used"?}; or, as an IMS call server over Ro,
// with "called": the number called in IMS-Information, units in CC-Time, Rating-Group 100 and
// Service-Context-Id 32260@3gpp.org), and prints each answer as one JSON line:
// its command, header flags and AVPs as node-diameter decoded them (it throws on anything it
// cannot decode). Usage: node gy-client.js PORT ORIGIN_HOST MSISDN REQUESTS_JSON
const diameter = require('diameter');

const [port, originHost, msisdn, requestsJson] = process.argv.slice(2);
const requests = JSON.parse(requestsJson);
const TYPES = {1: 'INITIAL_REQUEST', 2: 'UPDATE_REQUEST', 3: 'TERMINATION_REQUEST', 4: 'EVENT_REQUEST'};

function print(label, message) {
  console.log(JSON.stringify({label, command: message.command, flags: message.header.flags, body: message.body}));
}

const socket = diameter.createConnection({port: Number(port), host: '127.0.0.1'}, async () => {
  const connection = socket.diameterConnection;
  try {
    const cer = connection.createRequest('Diameter Common Messages', 'Capabilities-Exchange');
    cer.body = [
      ['Origin-Host', originHost],
      ['Origin-Realm', 'operator.test'],
      ['Host-IP-Address', '127.0.0.1'],
      ['Vendor-Id', 0],
      ['Product-Name', 'node-diameter'],
      ['Supported-Vendor-Id', 10415],
      ['Auth-Application-Id', 'Diameter Credit Control'],
    ];
    print('cea', await connection.sendRequest(cer));
    const session = `${originHost};${Date.now()}`;
    for (const r of requests) {
      const ccr = connection.createRequest('Diameter Credit Control Application', 'Credit-Control', session);
      ccr.header.flags.proxiable = true;
      const call = r.called !== undefined;
      const unit = call ? 'CC-Time' : 'CC-Total-Octets';
      const mscc = call ? [['Service-Identifier', 1000], ['Rating-Group', 100]] : [['Rating-Group', 10]];
      if (r.asked !== undefined) mscc.push(['Requested-Service-Unit', [[unit, r.asked]]]);
      if (r.used !== undefined) mscc.push(['Used-Service-Unit', [[unit, r.used]]]);
      ccr.body = ccr.body.concat([
        ['Origin-Host', originHost],
        ['Origin-Realm', 'operator.test'],
        ['Destination-Realm', r.realm || 'duckline.example'],
        ['Auth-Application-Id', 'Diameter Credit Control'],
        ['Service-Context-Id', call ? '32260@3gpp.org' : '32251@3gpp.org'],
        ['CC-Request-Type', TYPES[r.type]],
        ['CC-Request-Number', r.number],
        ['Subscription-Id', [['Subscription-Id-Type', 'END_USER_E164'], ['Subscription-Id-Data', msisdn]]],
        ['Multiple-Services-Credit-Control', mscc],
      ]);
      if (call) {
        ccr.body.push(['Service-Information', [['IMS-Information', [
          ['Role-Of-Node', 'ORIGINATING_ROLE'],
          ['Node-Functionality', 'S-CSCF'],
          ['Calling-Party-Address', `tel:+${msisdn}`],
          ['Called-Party-Address', r.called],
        ]]]]);
      }
      print(r.label, await connection.sendRequest(ccr));
    }
  } catch (error) {
    console.log(JSON.stringify({label: 'error', error: String(error && error.stack || error)}));
    process.exitCode = 1;
  }
  connection.end();
});

// The server's own requests (DWR if the test runs long, DPR when it stops) get their answers.
socket.on('diameterMessage', (event) => {
  event.response.body = event.response.body.concat([
    ['Result-Code', 'DIAMETER_SUCCESS'],
    ['Origin-Host', originHost],
    ['Origin-Realm', 'operator.test'],
  ]);
  event.callback(event.response);
});
socket.on('error', (error) => {
  console.log(JSON.stringify({label: 'error', error: String(error)}));
  process.exitCode = 1;
});
