package tuyaevents.pulsar;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.util.Map;
import java.util.Set;
import org.apache.pulsar.client.api.Authentication;
import org.apache.pulsar.client.api.AuthenticationDataProvider;
import org.apache.pulsar.client.api.EncodedAuthenticationParameterSupport;

/**
 * The broker's own clients (its REST admin client, the WebSocket service's Pulsar client) must pass
 * {@link TuyaAuthenticationProvider} like everyone else; Pulsar's stock client plugins cannot (the
 * Java {@code AuthenticationBasic} has method name {@code basic} and an {@code Authorization}
 * header). This plugin sends Tuya's {@code auth1} data, as Tuya's own Java SDK does.
 *
 * <p>Configured with {@code brokerClientAuthenticationParameters={"accessId":"..","accessSecret":".."}}.
 */
public final class TuyaClientAuthentication
        implements Authentication, EncodedAuthenticationParameterSupport {
    private static final long serialVersionUID = 1L;

    private String accessId;
    private String accessSecret;

    @Override
    public String getAuthMethodName() {
        return TuyaAuthenticationProvider.METHOD_NAME;
    }

    @Override
    public AuthenticationDataProvider getAuthData(String brokerHostName) {
        return authData();
    }

    @Override
    @Deprecated
    public AuthenticationDataProvider getAuthData() {
        return authData();
    }

    private AuthenticationDataProvider authData() {
        String username = accessId;
        String password = TuyaAuthenticationProvider.password(accessId, accessSecret);
        return new AuthenticationDataProvider() {
            @Override
            public boolean hasDataFromCommand() {
                return true;
            }

            @Override
            public String getCommandData() {
                JsonObject json = new JsonObject();
                json.addProperty("username", username);
                json.addProperty("password", password);
                return json.toString();
            }

            @Override
            public boolean hasDataForHttp() {
                return true;
            }

            @Override
            public Set<Map.Entry<String, String>> getHttpHeaders() {
                return Map.of(
                        "username", username,
                        "password", password,
                        PULSAR_AUTH_METHOD_NAME, TuyaAuthenticationProvider.METHOD_NAME)
                        .entrySet();
            }
        };
    }

    @Override
    public void configure(String encodedAuthParamString) {
        JsonObject params = JsonParser.parseString(encodedAuthParamString).getAsJsonObject();
        accessId = params.get("accessId").getAsString();
        accessSecret = params.get("accessSecret").getAsString();
    }

    @Override
    @Deprecated
    public void configure(Map<String, String> authParams) {
        accessId = authParams.get("accessId");
        accessSecret = authParams.get("accessSecret");
    }

    @Override
    public void start() {
        // stateless
    }

    @Override
    public void close() {
        // stateless
    }
}
