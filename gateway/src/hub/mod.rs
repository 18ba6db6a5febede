//! The Rust hub API: a hub is a table of named, typed methods plus connect/disconnect hooks.
//!
//! ```no_run
//! use gateway::hub::{Hub, HubContext, HubError};
//!
//! let hub = Hub::builder()
//!     .method("Add", |_ctx: HubContext, (a, b): (i64, i64)| async move { Ok::<_, HubError>(a + b) })
//!     .method("Shout", |ctx: HubContext, (text,): (String,)| async move {
//!         ctx.clients().others().send("shouted", (text.to_uppercase(),)).await?;
//!         Ok::<_, HubError>(())
//!     })
//!     .build();
//! ```
//!
//! Method names are matched without regard to case, as the official server does. A method
//! returning `()` completes without a result; any other `Serialize` type is sent as the result
//! (`None` as `null`). Each call runs in its own task, so a slow method never holds up the
//! connection's reader.

mod arguments;
mod context;
pub(crate) mod dispatch;
mod error;
pub mod relay;

use std::any::TypeId;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use protocol::Value;
use serde::Serialize;

pub use arguments::{ArgumentError, FromArguments, IntoArguments};
pub use context::{Clients, Groups, HubContext, Recipients};
pub use error::HubError;

/// What a method produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The method returns nothing.
    Void,
    /// The method returned a value (possibly `Nil`).
    Value(Value),
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Method = Arc<dyn Fn(HubContext, Vec<Value>) -> BoxFuture<Result<Reply, HubError>> + Send + Sync>;
type Hook = Arc<dyn Fn(HubContext) -> BoxFuture<()> + Send + Sync>;

/// A hub definition: methods and lifecycle hooks. Cheap to clone.
#[derive(Clone, Default)]
pub struct Hub {
    methods: Arc<HashMap<String, Method>>,
    on_connected: Option<Hook>,
    on_disconnected: Option<Hook>,
}

impl Hub {
    /// Starts a hub definition.
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    fn method(&self, name: &str) -> Option<&Method> {
        self.methods.get(&name.to_lowercase())
    }

    pub(crate) async fn connected(&self, context: HubContext) {
        if let Some(hook) = &self.on_connected {
            hook(context).await;
        }
    }

    pub(crate) async fn disconnected(&self, context: HubContext) {
        if let Some(hook) = &self.on_disconnected {
            hook(context).await;
        }
    }
}

/// Builds a [`Hub`].
#[derive(Default)]
pub struct HubBuilder {
    methods: HashMap<String, Method>,
    on_connected: Option<Hook>,
    on_disconnected: Option<Hook>,
}

impl HubBuilder {
    /// Adds a method. `A` is a tuple of `Deserialize` argument types (or `Vec<Value>` for any
    /// number); the returned value is the invocation's result. A later method with the same
    /// name (in any case) replaces an earlier one.
    pub fn method<A, R, F, Fut>(mut self, name: &str, method: F) -> Self
    where
        A: FromArguments,
        R: Serialize + Send + 'static,
        F: Fn(HubContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HubError>> + Send + 'static,
    {
        let method = Arc::new(method);
        let erased: Method = Arc::new(move |context, arguments| {
            let method = method.clone();
            Box::pin(async move {
                let arguments = A::from_arguments(arguments)?;
                let result = method(context, arguments).await?;
                into_reply(&result)
            })
        });
        self.methods.insert(name.to_lowercase(), erased);
        self
    }

    /// Runs after a connection's handshake, before its first message is handled.
    pub fn on_connected<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(HubContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_connected = Some(Arc::new(move |context| Box::pin(hook(context))));
        self
    }

    /// Runs once a connection is gone (it has already left its groups).
    pub fn on_disconnected<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(HubContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_disconnected = Some(Arc::new(move |context| Box::pin(hook(context))));
        self
    }

    /// Finishes the definition.
    pub fn build(self) -> Hub {
        Hub { methods: Arc::new(self.methods), on_connected: self.on_connected, on_disconnected: self.on_disconnected }
    }
}

fn into_reply<R: Serialize + 'static>(result: &R) -> Result<Reply, HubError> {
    if TypeId::of::<R>() == TypeId::of::<()>() {
        return Ok(Reply::Void);
    }
    protocol::value::to_value(result).map(Reply::Value).map_err(HubError::internal)
}
