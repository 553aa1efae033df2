/**
 * Free text that reaches the page, the API or the metrics (errors, journal
 * details) passes through here: connection strings, libpq key/value
 * passwords, `user@host:port/db` descriptions and every password the
 * dashboard knows of are replaced, so none can leak through an error message.
 */
export function makeRedactor(secrets: readonly string[]): (text: string) => string {
  const known = secrets.filter((secret) => secret.length >= 3).sort((a, b) => b.length - a.length);
  return (text) => {
    let redacted = text
      .replace(/postgres(?:ql)?:\/\/\S+/gi, '‹connection›')
      .replace(/password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)/gi, 'password=‹hidden›')
      .replace(/[\w.-]+@[\w.:[\]-]+:\d+\/[\w.-]+/g, '‹connection›');
    for (const secret of known) redacted = redacted.split(secret).join('‹hidden›');
    return redacted;
  };
}
