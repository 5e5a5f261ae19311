// Preloaded into the Portkey gateway for the benchmark: its server listens on every interface by
// default; this makes every server of the process listen on 127.0.0.1 only.
const net = require("net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number") {
    const rest = args.slice(1).filter((a) => typeof a === "function");
    return listen.call(this, args[0], "127.0.0.1", ...rest);
  }
  if (args[0] && typeof args[0] === "object" && !Array.isArray(args[0])) {
    args[0] = { ...args[0], host: "127.0.0.1" };
  }
  return listen.apply(this, args);
};
