// A real OpenID Connect provider for the console sign-in test: panva's oidc-provider
// (npm, installed by scripts/npm-oidc.sh into .cache/npm-oidc), on 127.0.0.1 only.
//
//   OIDC_PROVIDER_LIB  path of oidc-provider's lib/index.js
//   OIDC_PORT          port to listen on (127.0.0.1)
//   OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI   the one registered client
//
// Its development login form takes any name and password; the account's claims come
// from ACCOUNTS below (the role claim is "tongban_roles"). PKCE is required for every
// client, ID tokens carry the profile claims (conformIdTokenClaims off), signed RS256
// with a key made at start. Prints "listening <issuer>" when ready.
import { generateKeyPairSync } from "node:crypto";
import { pathToFileURL } from "node:url";

const { default: Provider } = await import(pathToFileURL(process.env.OIDC_PROVIDER_LIB).href);

const ACCOUNTS = {
  "wang.fang": { name: "王芳", roles: ["tongban-approver", "unrelated-group"] },
  "li.lei": { name: "李雷", roles: ["tongban-clerk", "tongban-licence"] },
  "zhang.san": { name: "张三", roles: ["canteen-committee"] },
};

const port = Number(process.env.OIDC_PORT);
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: "jwk" }), kid: "test-rs256", use: "sig", alg: "RS256" };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: process.env.OIDC_CLIENT_ID,
      client_secret: process.env.OIDC_CLIENT_SECRET,
      redirect_uris: [process.env.OIDC_REDIRECT_URI],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  jwks: { keys: [jwk] },
  cookies: { keys: ["tongban-test-cookie-key"] },
  pkce: { required: () => true },
  conformIdTokenClaims: false,
  claims: { openid: ["sub"], profile: ["name", "preferred_username", "tongban_roles"] },
  async findAccount(ctx, id) {
    const account = ACCOUNTS[id] || { name: id, roles: [] };
    return {
      accountId: id,
      async claims() {
        return { sub: id, name: account.name, preferred_username: id, tongban_roles: account.roles };
      },
    };
  },
});

const server = provider.listen(port, "127.0.0.1", () => {
  process.stdout.write(`listening ${issuer}\n`);
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
