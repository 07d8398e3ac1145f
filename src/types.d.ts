declare module 'fxa-common-password-list' {
  const list: { test(password: string): boolean }
  export default list
}

declare module 'bcrypt' {
  /** Native (thread pool); `salt` is a `$2b$<cost>$<22 chars>` string or a cost. */
  function hash(data: string, salt: string | number): Promise<string>
  function compare(data: string, encrypted: string): Promise<boolean>
  const bcrypt: { hash: typeof hash; compare: typeof compare }
  export default bcrypt
}
