package storetest

// Vectors made outside this code base: argon2id and bcrypt by the Python
// argon2-cffi and bcrypt packages, PBKDF2 by Python's hashlib following
// mosquitto-go-auth's documented format (PBKDF2$digest$iter$b64salt$b64hash).
var Vectors = []struct{ Name, Hash, Password string }{
	{"argon2id", "$argon2id$v=19$m=19456,t=2,p=1$ELINC+GPf8vL7IWHQ6szlw$M5CD1ZdIfhB2eXMS1hh7fWW1204q05ccSKMQ9qHi4iE", "argon-pass"},
	{"bcrypt 2b", "$2b$04$.MyMYYEjToFnNHnw3bpEqeesH5ElAsqBHvBxHoVFgBFxhAGLw8lwy", "bcrypt-pass"},
	{"bcrypt 2a", "$2a$04$ODrUWllZjlg80nF0jSzB2ODv.ZmzA.8voMsBqHUVGF6DPsgqYdVqm", "bcrypt-pass"},
	{"bcrypt 2y", "$2y$04$.MyMYYEjToFnNHnw3bpEqeesH5ElAsqBHvBxHoVFgBFxhAGLw8lwy", "bcrypt-pass"},
	{"pbkdf2 sha512", "PBKDF2$sha512$100000$MDEyMzQ1Njc4OWFiY2RlZg==$kRXD0Q6xQFHViVftYfGHiUn1FuWb8D3yeoONlW6FV0Qw97R26ipBlGUrPNbOeMV3KiNsx+NpJB8qyG7dp2KWJg==", "mosquitto-pass"},
	{"pbkdf2 sha256", "PBKDF2$sha256$1000$MDEyMzQ1Njc4OWFiY2RlZg==$tQiMXqcB5PD6y+Usxvp2sro3soO7p2nv5Mt9rdl+9yI=", "mosquitto-pass"},
}

// Hashes of other products' layouts, made outside this code base (the
// commands that made them are in vectorCommands, which
// TestVectorsAreIndependent runs again when the tools are there):
// Python 3's hashlib (md5, sha1, sha256, sha512, pbkdf2_hmac), its crypt
// module (libxcrypt's bcrypt), and the Argon2 reference implementation's
// argon2 command (Debian's argon2 package).
var (
	// EMQX: hex digests of the salted password, as its
	// password_hash_algorithm computes them; salt "s4lt".
	EMQXMD5Prefix    = "8b9b149e520e5bb006f722e08bd335e8"                                                                                                 // md5("s4lt" + "md5-pass")
	EMQXSHAPrefix    = "e3db994026f36a68d920a1ad82e6c794ca0b8533"                                                                                         // sha1("s4lt" + "sha-pass")
	EMQXSHA256Prefix = "e222730a3efebea28fd0bc3c138cdbb69377388d0cd1de3f6b8ec96450fe3dc5"                                                                 // sha256("s4lt" + "sha256-pass")
	EMQXSHA512Suffix = "49fcfb3d0f275278f8d9de5f34f5a1fbd8cf50028c37103a6b6bad142687ffde22068d1933562d2a6a9066ac7cccae7e287ef43aec32d91a695ce67684f30e11" // sha512("sha512-pass" + "s4lt")
	EMQXSHA256NoSalt = "97780b67166efd934e75d8a9556980067f505d26dcc9997972eecc8594a9a244"                                                                 // sha256("nosalt-pass")
	EMQXBcrypt       = "$2b$05$CCCCCCCCCCCCCCCCCCCCC.RAnASC3Zt8Cdzj6FJfrRtkBlq1blJzS"                                                                     // "bcrypt-pass"
	EMQXPBKDF2SHA256 = "1109007a132eb304456dba5a7f80733a432f24243b7a513ac30cc949ba16f095"                                                                 // pbkdf2_hmac(sha256, "pbkdf2-pass", "s4lt", 4096), 32 bytes
	EMQXPBKDF2SHA1   = "215737cbc6995db15e6c598c4768975aac453ea3"                                                                                         // pbkdf2_hmac(sha1, ..., 1000): dk_length unset, 20 bytes
	EMQXPBKDF2SHA512 = "831fbb5d7b2a6febf4007688101e77b8"                                                                                                 // pbkdf2_hmac(sha512, ..., 1000, 16)

	// mosquitto-go-auth: its hashers' formats.
	GoAuthPBKDF2    = "PBKDF2$sha512$100000$MDEyMzQ1Njc4OWFiY2RlZg==$ZZcyTkb9jJdWxCWxyq8jDJ23R3dj7nY7TlS0u2KHH/g="       // "goauth-pass", its default hasher
	GoAuthPBKDF2UTF = "PBKDF2$sha256$1000$plainsalt$ae/HPMcXCq3iUfYayxN369BCFGzoN9qj3FhhvI+MiSw="                        // "utf8-pass", salt_encoding utf-8
	GoAuthPBKDF2PHC = "$pbkdf2-sha512$i=1000,l=32$MDEyMzQ1Njc4OWFiY2RlZg$U3puKzuFRIYghRRKVkOEoQkUWk1k2mHn1m6IFRh1Io8"    // "phc-pass"
	GoAuthBcrypt    = "$2a$05$DDDDDDDDDDDDDDDDDDDDD.m9iDMKbZP6JE6aXIzVn3VC8Xze48S/m"                                     // "bcrypt-pass"
	GoAuthArgon2id  = "$argon2id$v=19$m=4096,t=3,p=2$c2FsdHNhbHRzYWx0MTIzNA$C3Pd//LSksBD9VD+L1Wv7pmyrMx/7UIe+Kr+/LBOrGQ" // "argon-pass", its argon2id defaults
)

// vectorCommands make the vectors above again: deterministic, as
// their salts are fixed.
var vectorCommands = []struct {
	want string
	cmd  []string
}{
	{EMQXMD5Prefix, []string{"python3", "-c", `import hashlib; print(hashlib.md5(b"s4lt"+b"md5-pass").hexdigest())`}},
	{EMQXSHAPrefix, []string{"python3", "-c", `import hashlib; print(hashlib.sha1(b"s4lt"+b"sha-pass").hexdigest())`}},
	{EMQXSHA256Prefix, []string{"python3", "-c", `import hashlib; print(hashlib.sha256(b"s4lt"+b"sha256-pass").hexdigest())`}},
	{EMQXSHA512Suffix, []string{"python3", "-c", `import hashlib; print(hashlib.sha512(b"sha512-pass"+b"s4lt").hexdigest())`}},
	{EMQXSHA256NoSalt, []string{"python3", "-c", `import hashlib; print(hashlib.sha256(b"nosalt-pass").hexdigest())`}},
	{EMQXBcrypt, []string{"python3", "-W", "ignore", "-c", `import crypt; print(crypt.crypt("bcrypt-pass", "$2b$05$CCCCCCCCCCCCCCCCCCCCC."))`}},
	{EMQXPBKDF2SHA256, []string{"python3", "-c", `import hashlib; print(hashlib.pbkdf2_hmac("sha256", b"pbkdf2-pass", b"s4lt", 4096).hex())`}},
	{EMQXPBKDF2SHA1, []string{"python3", "-c", `import hashlib; print(hashlib.pbkdf2_hmac("sha1", b"pbkdf2-pass", b"s4lt", 1000).hex())`}},
	{EMQXPBKDF2SHA512, []string{"python3", "-c", `import hashlib; print(hashlib.pbkdf2_hmac("sha512", b"pbkdf2-pass", b"s4lt", 1000, 16).hex())`}},
	{GoAuthPBKDF2, []string{"python3", "-c", `import hashlib, base64; s=b"0123456789abcdef"; ` +
		`print("PBKDF2$sha512$100000$"+base64.b64encode(s).decode()+"$"+base64.b64encode(hashlib.pbkdf2_hmac("sha512", b"goauth-pass", s, 100000, 32)).decode())`}},
	{GoAuthPBKDF2UTF, []string{"python3", "-c", `import hashlib, base64; ` +
		`print("PBKDF2$sha256$1000$plainsalt$"+base64.b64encode(hashlib.pbkdf2_hmac("sha256", b"utf8-pass", b"plainsalt", 1000, 32)).decode())`}},
	{GoAuthPBKDF2PHC, []string{"python3", "-c", `import hashlib, base64; s=b"0123456789abcdef"; b=lambda x: base64.b64encode(x).decode().rstrip("="); ` +
		`print("$pbkdf2-sha512$i=1000,l=32$"+b(s)+"$"+b(hashlib.pbkdf2_hmac("sha512", b"phc-pass", s, 1000, 32)))`}},
	{GoAuthBcrypt, []string{"python3", "-W", "ignore", "-c", `import crypt; print(crypt.crypt("bcrypt-pass", "$2a$05$DDDDDDDDDDDDDDDDDDDDD."))`}},
	{GoAuthArgon2id, []string{"sh", "-c", `printf %s argon-pass | argon2 saltsaltsalt1234 -id -t 3 -m 12 -p 2 -l 32 -e`}},
}
