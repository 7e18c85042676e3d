// Verifies one webhook delivery with the Standard Webhooks reference library.
// stdin: {"secret": "whsec_…", "headers": {"webhook-id": …, …}, "body": "<raw body>"}.
// Prints the verified payload as JSON and exits 0, or prints why and exits 1.
import { Webhook } from "standardwebhooks";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { secret, headers, body } = JSON.parse(input);
try {
  const payload = new Webhook(secret).verify(body, headers);
  process.stdout.write(JSON.stringify(payload));
} catch (error) {
  process.stdout.write(`not verified: ${error.message}`);
  process.exit(1);
}
