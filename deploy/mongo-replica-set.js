// Healthcheck of the dev stack's MongoDB (docker-compose.yml, service "mongo"),
// run by mongosh every few seconds:
//
//   mongosh --quiet --norc --file /etc/streamer/mongo-replica-set.js
//
// Change streams need a replica set, so mongod runs with --replSet rs0 and
// this script initiates the set the first time it finds it uninitiated
// (idempotent: later runs only check). The member's host is the compose
// service name, which every container of the stack resolves; a driver outside
// the stack connects with ?directConnection=true instead.
//
// Exit status 0 (healthy) only once this node is the writable primary, so
// services that depend on mongo being healthy can open change streams at once.
try {
  rs.status();
} catch (e) {
  if (e.codeName !== "NotYetInitialized") {
    throw e; // a real error: report it, exit non-zero
  }
  rs.initiate({ _id: "rs0", members: [{ _id: 0, host: "mongo:27017" }] });
  print("replica set rs0 initiated");
}
if (!db.hello().isWritablePrimary) {
  print("waiting for this node to become primary of rs0");
  quit(1);
}
