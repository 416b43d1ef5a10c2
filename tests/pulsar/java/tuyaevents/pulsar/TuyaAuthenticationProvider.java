package tuyaevents.pulsar;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Base64;
import java.util.Properties;
import java.util.concurrent.CompletableFuture;
import javax.naming.AuthenticationException;
import org.apache.pulsar.broker.ServiceConfiguration;
import org.apache.pulsar.broker.authentication.AuthenticationDataSource;
import org.apache.pulsar.broker.authentication.AuthenticationProvider;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Checks Tuya's message-service credentials on the test broker, so the tests prove the daemon's
 * credentials byte for byte instead of trusting a broker that ignores them.
 *
 * <p>Tuya's scheme (method name {@code auth1}): the binary protocol's CONNECT carries the UTF-8
 * JSON {@code {"username":"<ACCESS_ID>","password":"<password>"}}; the WebSocket and REST APIs carry
 * plain {@code username} and {@code password} headers. The password is
 * {@code md5_hex(ACCESS_ID + md5_hex(ACCESS_SECRET))[8:24]}.
 *
 * <p>The known pairs live in a properties file ({@code accessId=accessSecret}) named by the broker
 * property {@code tuyaCredentialsFile}. It is re-read on every authentication so that a test can
 * register a fresh pair while the broker runs; the Python side replaces it atomically.
 *
 * <p>Pulsar 4 calls {@link #authenticateAsync} for all three paths (binary through
 * {@code OneStageAuthenticationState}, HTTP and WebSocket through the default
 * {@code authenticateHttpRequest}), so that is the one method implemented.
 */
public final class TuyaAuthenticationProvider implements AuthenticationProvider {
    static final String METHOD_NAME = "auth1";
    static final String CREDENTIALS_FILE_PROPERTY = "tuyaCredentialsFile";

    private static final Logger LOG = LoggerFactory.getLogger(TuyaAuthenticationProvider.class);

    private Path credentialsFile;

    /** The password Tuya expects for a key pair: the middle 16 hex digits of a double MD5. */
    public static String password(String accessId, String accessSecret) {
        return md5Hex(accessId + md5Hex(accessSecret)).substring(8, 24);
    }

    @Override
    @Deprecated // abstract all the same: the default initialize(Context) delegates to it
    public void initialize(ServiceConfiguration config) throws IOException {
        String path = config.getProperties().getProperty(CREDENTIALS_FILE_PROPERTY, "").trim();
        if (path.isEmpty()) {
            throw new IOException("broker property " + CREDENTIALS_FILE_PROPERTY + " is not set");
        }
        credentialsFile = Path.of(path);
        LOG.info("Tuya auth1 provider: {} known access ids in {}", loadCredentials().size(), path);
    }

    @Override
    public String getAuthMethodName() {
        return METHOD_NAME;
    }

    @Override
    public CompletableFuture<String> authenticateAsync(AuthenticationDataSource authData) {
        try {
            return CompletableFuture.completedFuture(check(authData));
        } catch (AuthenticationException e) {
            LOG.warn("Tuya auth1 refused a client: {}", e.getMessage());
            return CompletableFuture.failedFuture(e);
        }
    }

    @Override
    public void close() {
        // nothing held open: the credentials file is read per authentication
    }

    private String check(AuthenticationDataSource authData) throws AuthenticationException {
        String[] credentials;
        if (authData.hasDataFromCommand()) {
            credentials = parseCommandData(authData.getCommandData());
        } else if (authData.hasDataFromHttp()) {
            credentials = fromHeaders(authData);
        } else {
            throw new AuthenticationException("no credentials in the request");
        }
        String accessId = credentials[0];
        String password = credentials[1];
        String secret;
        try {
            secret = loadCredentials().getProperty(accessId);
        } catch (IOException e) {
            throw new AuthenticationException("cannot read " + credentialsFile + ": " + e);
        }
        if (secret == null) {
            throw new AuthenticationException("unknown access id " + accessId);
        }
        byte[] expected = password(accessId, secret).getBytes(StandardCharsets.UTF_8);
        if (!MessageDigest.isEqual(expected, password.getBytes(StandardCharsets.UTF_8))) {
            throw new AuthenticationException("wrong password for access id " + accessId);
        }
        return accessId;
    }

    /** Binary protocol: exactly the JSON object Tuya's SDKs send, nothing looser. */
    private static String[] parseCommandData(String commandData) throws AuthenticationException {
        if (commandData == null) {
            throw new AuthenticationException("empty auth data");
        }
        try {
            JsonElement element = JsonParser.parseString(commandData);
            if (!element.isJsonObject()) {
                throw new AuthenticationException("auth data is not a JSON object");
            }
            JsonObject object = element.getAsJsonObject();
            return new String[] {stringField(object, "username"), stringField(object, "password")};
        } catch (JsonParseException | IllegalStateException e) {
            throw new AuthenticationException("auth data is not the JSON {username, password}");
        }
    }

    private static String stringField(JsonObject object, String name) throws AuthenticationException {
        JsonElement value = object.get(name);
        if (value == null || !value.isJsonPrimitive() || !value.getAsJsonPrimitive().isString()) {
            throw new AuthenticationException("auth data has no string field " + name);
        }
        return value.getAsString();
    }

    /**
     * HTTP and WebSocket: the {@code username}/{@code password} headers Tuya uses. The broker's own
     * REST client (see {@link TuyaClientAuthentication}) sends the same headers.
     */
    private static String[] fromHeaders(AuthenticationDataSource authData)
            throws AuthenticationException {
        String username = authData.getHttpHeader("username");
        String password = authData.getHttpHeader("password");
        if (username == null || password == null) {
            throw new AuthenticationException("missing username/password headers");
        }
        return new String[] {username, password};
    }

    private Properties loadCredentials() throws IOException {
        Properties properties = new Properties();
        try (Reader reader = Files.newBufferedReader(credentialsFile, StandardCharsets.UTF_8)) {
            properties.load(reader);
        }
        return properties;
    }

    private static String md5Hex(String text) {
        try {
            byte[] digest = MessageDigest.getInstance("MD5").digest(text.getBytes(StandardCharsets.UTF_8));
            StringBuilder hex = new StringBuilder(32);
            for (byte b : digest) {
                hex.append(Character.forDigit((b >> 4) & 0xf, 16)).append(Character.forDigit(b & 0xf, 16));
            }
            return hex.toString();
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("MD5 is missing from this JVM", e);
        }
    }
}
