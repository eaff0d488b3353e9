package io.mqttauthproxy.hivemq;

import com.hivemq.embedded.EmbeddedExtension;
import com.hivemq.embedded.EmbeddedHiveMQ;
import com.hivemq.extension.sdk.api.ExtensionMain;
import com.hivemq.extension.sdk.api.auth.SimpleAuthenticator;
import com.hivemq.extension.sdk.api.packets.connect.ConnectPacket;
import com.hivemq.extension.sdk.api.parameter.ExtensionStartInput;
import com.hivemq.extension.sdk.api.parameter.ExtensionStartOutput;
import com.hivemq.extension.sdk.api.parameter.ExtensionStopInput;
import com.hivemq.extension.sdk.api.parameter.ExtensionStopOutput;
import com.hivemq.extension.sdk.api.services.Services;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * Starts an unmodified embedded HiveMQ CE for mqtt-authproxy's tests.
 *
 * <pre>java -jar hivemq-launcher.jar CONFIG_TEMPLATE PORT WORK_DIR</pre>
 *
 * CONFIG_TEMPLATE is a config.xml in the style of deploy/hivemq/config.xml:
 * its tcp-listener port and bind address are replaced by PORT and 127.0.0.1.
 * WORK_DIR receives conf/, data/ and extensions/. Prints
 * "HIVEMQ READY port=PORT" once the listener is up, and one line
 * "HIVEMQ CONNECT ..." per CONNECT received (user name and the SHA-256 of the
 * password, never the password), from a small embedded extension. Stops
 * cleanly on SIGTERM.
 */
public final class Launcher {
    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: Launcher CONFIG_TEMPLATE PORT WORK_DIR");
            System.exit(2);
        }
        Path template = Path.of(args[0]);
        int port = Integer.parseInt(args[1]);
        Path work = Path.of(args[2]);
        Path conf = Files.createDirectories(work.resolve("conf"));
        Path data = Files.createDirectories(work.resolve("data"));
        Path ext = Files.createDirectories(work.resolve("extensions"));
        String xml = Files.readString(template)
                .replaceFirst("<port>\\d+</port>", "<port>" + port + "</port>")
                .replaceFirst("<bind-address>[^<]*</bind-address>", "<bind-address>127.0.0.1</bind-address>");
        Files.writeString(conf.resolve("config.xml"), xml);

        EmbeddedExtension recorder = EmbeddedExtension.builder()
                .withId("connect-recorder").withName("CONNECT recorder").withVersion("1")
                .withPriority(0).withStartPriority(1000).withAuthor("mqtt-authproxy")
                .withExtensionMain(new Recorder()).build();
        EmbeddedHiveMQ hivemq = EmbeddedHiveMQ.builder()
                .withConfigurationFolder(conf).withDataFolder(data).withExtensionsFolder(ext)
                .withEmbeddedExtension(recorder).build();

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                hivemq.stop().get(20, TimeUnit.SECONDS);
                System.out.println("HIVEMQ STOPPED");
                System.out.flush();
            } catch (Exception e) {
                System.err.println("HIVEMQ STOP FAILED " + e);
            } finally {
                stopped.countDown();
            }
        }));
        hivemq.start().join();
        System.out.println("HIVEMQ READY port=" + port);
        System.out.flush();
        stopped.await();
    }

    /**
     * Prints what each CONNECT carried, for the tests to assert on. It is an
     * authenticator that admits every client (as HiveMQ CE does with no
     * security extension): only an authenticator sees the password before
     * HiveMQ clears it.
     */
    static final class Recorder implements ExtensionMain {
        @Override
        public void extensionStart(ExtensionStartInput in, ExtensionStartOutput out) {
            Services.securityRegistry().setAuthenticatorProvider(input -> (SimpleAuthenticator) (auth, result) -> {
                ConnectPacket c = auth.getConnectPacket();
                String pw = c.getPassword().map(Recorder::sha256).orElse("none");
                System.out.println("HIVEMQ CONNECT client=" + c.getClientId()
                        + " version=" + c.getMqttVersion()
                        + " username=" + c.getUserName().orElse("<none>")
                        + " password_sha256=" + pw
                        + " clean_start=" + c.getCleanStart()
                        + " will=" + c.getWillPublish().isPresent());
                System.out.flush();
                result.authenticateSuccessfully();
            });
        }

        @Override
        public void extensionStop(ExtensionStopInput in, ExtensionStopOutput out) {
        }

        static String sha256(ByteBuffer b) {
            try {
                byte[] bytes = new byte[b.remaining()];
                b.duplicate().get(bytes);
                return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes));
            } catch (Exception e) {
                return "error";
            }
        }
    }

    private Launcher() {
    }

    static {
        System.setProperty("file.encoding", StandardCharsets.UTF_8.name());
    }
}
